"""WCT2 checkpoint files: this project's own and the official clovaai/WCT2 releases.

``style.wct2_checkpoints`` names a directory, or one encoder file in it; the decoder is the file
of the same name with ``encoder`` replaced by ``decoder``. Accepted pairs, looked for in this
order when a directory is named:

============================================  ==========================================
``encoder.pth`` / ``decoder.pth``             this project's :class:`~sim2real.style.wct2.WCT2`
                                              state dicts (``sum`` or ``cat5``, told apart by
                                              the decoder's weight shapes)
``wave_encoder_cat5_l4.pth`` / ``wave_decoder_cat5_l4.pth``  the official default (``option_unpool cat5``)
``wave_encoder_sum_l4.pth`` / ``wave_decoder_sum_l4.pth``    the official ``sum`` variant
============================================  ==========================================

A folder holding both official variants (the official ``model_checkpoints/``) therefore gives
``cat5``, the official default; name ``…/wave_encoder_sum_l4.pth`` to use ``sum``.

Official files are mapped onto this project's layer names: the encoder's 1×1 ``conv0`` (a
per-pixel colour transform) is folded exactly into ``conv1_1`` (reflection padding commutes
with a per-pixel map); ``convX_Y`` become ``layers.<i>.conv``; the Haar filter weights
(``poolK.{LL,LH,HL,HH}``, ``recon_blockK.{…}``) are checked to be the fixed Haar filters and
dropped; a ``module.`` prefix (DataParallel) is stripped. Every file is read with
``torch.load(..., weights_only=True)``; a bad file raises a one-line
:class:`~sim2real.errors.ConfigError` naming the file and ``style.wct2_checkpoints``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from sim2real.errors import ConfigError
from sim2real.style.wct2 import BANDS, DECODER_NAMES, ENCODER_NAMES, HAAR, WCT2
from sim2real.style.weights import load_state_dict_file

PARAM = "style.wct2_checkpoints"
OWN_FILES = ("encoder.pth", "decoder.pth")
OFFICIAL_FILES = {u: (f"wave_encoder_{u}_l4.pth", f"wave_decoder_{u}_l4.pth") for u in ("cat5", "sum")}
SEARCH_ORDER = (("own", OWN_FILES), ("cat5", OFFICIAL_FILES["cat5"]), ("sum", OFFICIAL_FILES["sum"]))
# official decoder conv names of the cat5 variant (5·C inputs) → the sum variant's names
CAT5_DECODER_RENAME = {"conv3_4_2": "conv3_4", "conv2_2_2": "conv2_2", "conv1_2_2": "conv1_2"}


def find_checkpoint_pair(checkpoints: str | Path | None) -> tuple[str, Path, Path]:
    """(kind: own | cat5 | sum, encoder path, decoder path) for ``style.wct2_checkpoints``."""
    if checkpoints in (None, "", "null"):
        raise ConfigError(f"params.yaml: {PARAM} is not set; the wct2 method needs WCT2 weights: a folder with "
                          f"{' + '.join(OWN_FILES)} or the official {' + '.join(OFFICIAL_FILES['cat5'])}")
    root = Path(checkpoints).expanduser()
    if root.is_file():
        for kind, (enc, dec) in SEARCH_ORDER:
            if root.name == enc:
                decoder = root.with_name(dec)
                if not decoder.is_file():
                    raise ConfigError(f"params.yaml: {PARAM}: {decoder} not found (the decoder of {root.name})")
                return kind, root, decoder
        raise ConfigError(f"params.yaml: {PARAM}: {root.name} is not a WCT2 encoder file name "
                          f"({', '.join(e for _, (e, _d) in SEARCH_ORDER)})")
    if not root.is_dir():
        raise ConfigError(f"params.yaml: {PARAM}: {root} not found; put the WCT2 {OWN_FILES[0]} + {OWN_FILES[1]} "
                          f"(or the official wave_encoder_*_l4.pth + wave_decoder_*_l4.pth) there")
    for kind, (enc, dec) in SEARCH_ORDER:
        if (root / enc).is_file():
            if not (root / dec).is_file():
                raise ConfigError(f"params.yaml: {PARAM}: {root / dec} not found (the decoder of {enc})")
            return kind, root / enc, root / dec
    raise ConfigError(f"params.yaml: {PARAM}: {root} holds no WCT2 checkpoints; expected {' + '.join(OWN_FILES)} "
                      f"or {' + '.join(OFFICIAL_FILES['cat5'])} or {' + '.join(OFFICIAL_FILES['sum'])}")


def _strip_module(state: dict) -> dict:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def _check_haar(state: dict, prefix: str, path: Path) -> None:
    """The official pool/unpool filters must be the fixed Haar filters (C, 1, 2, 2); pops them."""
    for band in BANDS:
        key = f"{prefix}.{band}.weight"
        w = state.pop(key, None)
        if w is None:
            continue
        ref = torch.tensor(HAAR[band], dtype=torch.float32)
        if w.ndim != 4 or tuple(w.shape[1:]) != (1, 2, 2) or not torch.allclose(w.float(), ref.expand_as(w), atol=1e-6):
            raise ConfigError(f"{path}: {key} is not the fixed Haar {band} filter this loader assumes ({PARAM})")


def official_encoder_state(state: dict, path: Path) -> dict:
    """Official WaveEncoder state dict → :class:`~sim2real.style.wct2.WaveEncoder` keys (conv0 folded)."""
    state = dict(_strip_module(state))
    for k in (1, 2, 3):
        _check_haar(state, f"pool{k}", path)
    try:
        a, b0 = state.pop("conv0.weight"), state.pop("conv0.bias")
        w1, b1 = state.pop("conv1_1.weight"), state.pop("conv1_1.bias")
    except KeyError as exc:
        raise ConfigError(f"{path}: not an official WCT2 encoder ({PARAM}): missing {exc.args[0]}") from None
    if tuple(a.shape) != (3, 3, 1, 1) or w1.ndim != 4 or w1.shape[1] != 3:
        raise ConfigError(f"{path}: conv0 {tuple(a.shape)} / conv1_1 {tuple(w1.shape)} do not fit the official "
                          f"WCT2 encoder ({PARAM})")
    a2 = a[:, :, 0, 0].double()                       # (k, i): conv0 output k from input i
    w1d = w1.double()
    out = {"layers.0.conv.weight": torch.einsum("okpq,ki->oipq", w1d, a2).to(w1.dtype),
           "layers.0.conv.bias": (b1.double() + torch.einsum("okpq,k->o", w1d, b0.double())).to(b1.dtype)}
    return _rename(state, ENCODER_NAMES, out, path, skip_first=True)


def official_decoder_state(state: dict, unpool: str, path: Path) -> dict:
    """Official WaveDecoder state dict (``sum`` or ``cat5``) → :class:`~sim2real.style.wct2.WaveDecoder` keys."""
    state = dict(_strip_module(state))
    for k in (1, 2, 3):
        _check_haar(state, f"recon_block{k}", path)
    if unpool == "cat5":
        renamed = {}
        for key, v in state.items():
            layer, _, rest = key.partition(".")
            if layer in CAT5_DECODER_RENAME.values():
                raise ConfigError(f"{path}: {key} belongs to a sum decoder, but the file name says cat5 ({PARAM})")
            renamed[f"{CAT5_DECODER_RENAME.get(layer, layer)}.{rest}"] = v
        state = renamed
    elif any(key.partition(".")[0] in CAT5_DECODER_RENAME for key in state):
        raise ConfigError(f"{path}: holds cat5 layers ({', '.join(CAT5_DECODER_RENAME)}) but the file name says sum "
                          f"({PARAM})")
    return _rename(state, DECODER_NAMES, {}, path)


def _rename(state: dict, names: tuple[str, ...], out: dict, path: Path, skip_first: bool = False) -> dict:
    for i, name in enumerate(names):
        if name.startswith(("pool", "unpool")) or (skip_first and i == 0):
            continue
        for p in ("weight", "bias"):
            key = f"{name}.{p}"
            if key not in state:
                raise ConfigError(f"{path}: not an official WCT2 checkpoint ({PARAM}): missing {key}")
            out[f"layers.{i}.conv.{p}"] = state.pop(key)
    if state:
        raise ConfigError(f"{path}: unexpected keys for an official WCT2 checkpoint ({PARAM}): {sorted(state)[:4]}")
    return out


def _own_unpool(decoder_state: dict) -> str:
    """sum or cat5 from this project's decoder state dict (the conv after unpool3 reads 256 or 1280 channels)."""
    w = decoder_state.get("layers.2.conv.weight")
    return "cat5" if w is not None and w.ndim == 4 and w.shape[1] == 5 * 256 else "sum"


def load_wct2(checkpoints: str | Path | None) -> WCT2:
    """Build :class:`~sim2real.style.wct2.WCT2` from ``style.wct2_checkpoints`` (see the module docstring).

    Raises
    ------
    ConfigError naming the file and ``style.wct2_checkpoints`` when a file is missing, unreadable
    (``weights_only=True``) or does not fit the architecture.
    """
    kind, enc_path, dec_path = find_checkpoint_pair(checkpoints)
    enc = load_state_dict_file(enc_path, f"WCT2 encoder ({PARAM})")
    dec = load_state_dict_file(dec_path, f"WCT2 decoder ({PARAM})")
    if kind == "own":
        unpool = _own_unpool(dec)
    else:
        unpool = kind
        enc = official_encoder_state(enc, enc_path)
        dec = official_decoder_state(dec, unpool, dec_path)
    model = WCT2(unpool)
    for path, part, state in ((enc_path, model.encoder, enc), (dec_path, model.decoder, dec)):
        try:
            part.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            msg = " ".join(str(exc).split())[:300]
            raise ConfigError(f"{path}: does not fit the WCT2 {unpool} architecture ({PARAM}): {msg}") from None
    return model.eval()
