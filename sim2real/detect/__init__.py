"""Detection with ultralytics, offline-safe: datasets (:mod:`.datasets`), training (:mod:`.train`),
inference/validation (:mod:`.predict`) and the hermetic settings they share (:mod:`.offline`).

Nothing here imports ultralytics at import time: :func:`sim2real.detect.offline.configure` must
set the environment (offline mode, settings folder) before ultralytics is first imported.
"""
