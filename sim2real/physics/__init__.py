"""Depth- and instance-aware realism: distance blur, thin-lens defocus, Koschmieder haze,
camera effects (sensor noise, JPEG, vignetting, lateral chromatic aberration, ego-motion blur),
exposure / tone and white balance in linear light, contrast of the encoded signal. numpy in, numpy out.

Every public function takes RGB ``uint8`` (H, W, 3) images and ``float32`` z-depth in metres
(+inf = sky) and returns ``uint8``; zero strength returns an identical copy.
"""
from sim2real.physics.blur import blur_targets, coc_sigma_px, defocus, distance_blur, distance_sigma_px
from sim2real.physics.camera import (chromatic_aberration, jpeg_recompress, motion_blur, sensor_noise, vignetting,
                                     vignetting_gain)
from sim2real.physics.colour import display_contrast, exposure_tone, temperature_gains, white_balance
from sim2real.physics.frame import object_transmission, render, sample_values
from sim2real.physics.haze import beta_per_m, estimate_airlight, haze, lowfreq_noise, ray_length_m, transmission
from sim2real.physics.layered import layered_blur

__all__ = [
    "distance_blur", "distance_sigma_px", "defocus", "coc_sigma_px", "blur_targets", "layered_blur",
    "haze", "transmission", "ray_length_m", "beta_per_m", "estimate_airlight", "lowfreq_noise",
    "sensor_noise", "jpeg_recompress", "vignetting", "vignetting_gain", "motion_blur", "chromatic_aberration",
    "exposure_tone", "white_balance", "temperature_gains", "display_contrast",
    "sample_values", "render", "object_transmission",
]
