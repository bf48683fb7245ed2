"""Style transfer: Gatys NST (fast coarse-to-fine path), photorealistic segmentation-aware
wavelet colour transfer, and the WCT2 wavelet autoencoder (user-supplied weights)."""
from sim2real.style.nst import NSTConfig, fast_nst, gatys
from sim2real.style.photoreal import COARSE_CLASSES, PhotorealConfig, photoreal_transfer
from sim2real.style.weights import load_vgg16_features, resolve_vgg16_weights

__all__ = ["NSTConfig", "fast_nst", "gatys", "COARSE_CLASSES", "PhotorealConfig", "photoreal_transfer",
           "load_vgg16_features", "resolve_vgg16_weights"]
