"""Exact on-disk formats: Virtual KITTI 2 (:mod:`.vkitti2`), KITTI object (:mod:`.kitti`),
ultralytics YOLO (:mod:`.yolo`) and image files (:mod:`.images`)."""
