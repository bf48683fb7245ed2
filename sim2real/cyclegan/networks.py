"""CycleGAN networks: ResNet generator, 70×70 PatchGAN discriminator, image history pool.

Written from Zhu et al. 2017 (Sec. 4 and Appendix 7.2) and Johnson et al. 2016 (the ResNet
generator). Images are float tensors (N, 3, H, W) in [-1, 1]; the generator's output has the
same range (tanh).

References
----------
Zhu, Park, Isola, Efros. "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks", ICCV 2017 (arXiv:1703.10593).
Johnson, Alahi, Fei-Fei. "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
ECCV 2016.
Isola, Zhu, Zhou, Efros. "Image-to-Image Translation with Conditional Adversarial Networks"
(PatchGAN), CVPR 2017.
Shrivastava et al. "Learning from Simulated and Unsupervised Images through Adversarial
Training" (history pool), CVPR 2017.
Mao et al. "Least Squares Generative Adversarial Networks", ICCV 2017.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sim2real.errors import ConfigError

#: the generator downsamples twice by 2, so whole-frame inputs must be a multiple of this.
SIZE_MULTIPLE = 4


def _norm(channels: int) -> nn.Module:
    # affine=False, track_running_stats=False: the paper's instance norm, same in train and eval.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Residual block R_k: reflect-pad, 3×3 conv, IN, ReLU, reflect-pad, 3×3 conv, IN, plus skip."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN generator ``c7s1-ngf, d2ngf, d4ngf, R4ngf × n_blocks, u2ngf, ungf, c7s1-3``.

    Fully convolutional: any (H, W) with H and W multiples of 4 maps to the same (H, W)
    (:func:`sim2real.cyclegan.translate.translate_image` pads other sizes).

    Parameters
    ----------
    ngf : filters of the first layer (64 in the paper).
    n_blocks : residual blocks (9 for 256×256 and larger in the paper; fewer for the demo).
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        if ngf < 1 or n_blocks < 0:
            raise ConfigError(f"cyclegan: need ngf >= 1 and n_blocks >= 0, got ngf={ngf}, n_blocks={n_blocks}")
        self.ngf, self.n_blocks = int(ngf), int(n_blocks)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), _norm(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(2):  # d_k: 3×3 stride-2 conv, IN, ReLU
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), _norm(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch) for _ in range(n_blocks)]
        for _ in range(2):  # u_k: 3×3 fractional-strided conv (stride 1/2), IN, ReLU
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                       _norm(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) float in [-1, 1], H and W multiples of 4 → (N, 3, H, W) in [-1, 1]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"generator expects (N, 3, H, W), got {tuple(x.shape)}")
        if x.shape[2] % SIZE_MULTIPLE or x.shape[3] % SIZE_MULTIPLE:
            raise ValueError(f"generator input H, W must be multiples of {SIZE_MULTIPLE}, got {tuple(x.shape[2:])}")
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN ``C64-C128-C256-C512`` + 1-channel 4×4 conv; 70×70 receptive field at n_layers=3.

    No norm on the first layer, LeakyReLU(0.2), instance norm elsewhere; output is a map of
    raw (unbounded) scores for the least-squares loss.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if ndf < 1 or n_layers < 1:
            raise ConfigError(f"cyclegan: need ndf >= 1 and d_layers >= 1, got ndf={ndf}, d_layers={n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride=stride, padding=1), _norm(out), nn.LeakyReLU(0.2, True)]
            ch = out
        layers += [nn.Conv2d(ch, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def receptive_field_px(n_layers: int = 3) -> int:
    """Receptive field of :class:`PatchDiscriminator` in input pixels (70 for n_layers=3)."""
    rf = 1
    for stride in reversed([2] * n_layers + [1, 1]):  # walk back from the output: k=4 every layer
        rf = rf * stride + (4 - stride)
    return rf


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Gaussian N(0, gain²) init of conv weights, zero biases (the paper's released code)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def lsgan_loss(pred: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean (D(x) − 1)² for real targets, mean D(x)² for fake ones."""
    target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
    return torch.mean((pred.float() - target.float()) ** 2)


class ImagePool:
    """History of generated images (Shrivastava et al. 2017) fed to the discriminators.

    Until ``size`` images are stored each new image is stored and returned; afterwards, with
    probability 1/2 a stored image is returned and replaced by the new one, else the new image
    is returned. ``size`` 0 disables the pool. Randomness comes from the ``rng`` passed in, so
    a resumed run draws the same sequence.
    """

    def __init__(self, size: int = 50):
        if size < 0:
            raise ConfigError(f"cyclegan.pool_size must be >= 0, got {size}")
        self.size = int(size)
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """images: (N, 3, H, W) detached → (N, 3, H, W) mix of new and stored images."""
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif rng.random() < 0.5:
                j = int(rng.integers(len(self.images)))
                out.append(self.images[j].clone())
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)

    def state(self) -> list[torch.Tensor]:
        return [t.cpu() for t in self.images]

    def load_state(self, images: list[torch.Tensor], device: torch.device | str) -> None:
        self.images = [t.to(device) for t in images][: self.size]
