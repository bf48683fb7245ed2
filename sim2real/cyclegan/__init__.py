"""CycleGAN (Zhu et al. 2017) for unpaired sim→real translation: networks, training, translation.

* :mod:`.networks`   ResNet generator, 70×70 PatchGAN, LSGAN loss, image history pool
* :mod:`.train`      crops with scale jitter, the resumable training loop, sample grid
* :mod:`.checkpoint` checkpoints and exported generator weights (``weights_only`` loadable)
* :mod:`.translate`  whole-frame or tiled full-resolution translation (output size == input size)
* :mod:`.stats`      colour / sharpness / edge statistics used to check the translation
"""
