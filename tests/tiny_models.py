"""Tiny random-init stand-ins for every learned backend, written to disk the way real weights are.

Each ``make_*`` writes into ``folder`` and returns paths; the backends then load them through the
same code a user's real checkpoint goes through (``torch.load`` + ``load_state_dict`` for SAM,
``torch.jit.load`` for LaMa, ``from_pretrained(local_files_only=True)`` for SD, a checkout on
``sys.path`` + pickle/checkpoint for MAT and PIH). Nothing is downloaded.

* ``make_tiny_sam(folder) -> TinySam``: real ``segment_anything.modeling`` classes (ViT 64-dim,
  depth 2, 256 px), state dict saved to ``sam_tiny.pth`` plus ``sam_tiny.json`` (its config).
* ``make_tiny_lama(folder) -> Path``: a scripted module with LaMa's ``model(image, mask)``
  interface and its trainer's wrapping (``img * (1 - mask)`` + mask in, ``mask * pred + (1 - mask)
  * img`` out), saved as ``big-lama.pt``.
* ``make_tiny_sd_inpaint(folder) -> Path``: a ``StableDiffusionInpaintPipeline`` (9-channel UNet,
  tiny VAE, tiny CLIP text model, byte-level CLIP tokenizer; native size 64 px) saved with
  ``save_pretrained``; ``flag_everything_nsfw=True`` adds a real safety checker that flags every
  image.
* ``make_fake_mat_checkout(folder) -> TinyCheckout``: ``MAT/`` with ``legacy.py``, ``dnnlib/``,
  ``torch_utils/ops`` (custom ops whose CUDA build "fails") and ``networks/mat.py`` (a tiny
  ``Generator`` with MAT's constructor and call signature that records each call in ``G.calls``)
  and ``MAT/pretrained/tiny.pkl`` pickled as MAT's are.
* ``make_fake_pih_checkout(folder) -> TinyCheckout``: ``PIH/model.py`` with a tiny
  ``Model_Composite_PL`` (PIH's constructor, forward signature, ``pl_table``/``gainmap``
  attributes and ``LUT3D``; asserts the 512 px inputs ``inference.py`` feeds; records inputs in
  ``model.calls``) and ``PIH/pretrained/ckpt_g39.pth`` saved as ``PIH_train.py``'s ``save_model``
  saves it (``args`` from a real ``OptionParser``).

What the stand-ins reproduce is upstream's *input handling*; the tests compare our inputs with an
oracle that repeats upstream's preprocessing (see docs/BACKENDS.md).

``tiny_models()`` builds all of them once per process in a temporary folder (removed at exit) and
``tiny_backend_options(stage, name)`` gives the builder keyword arguments for any registered
backend, e.g. ``build_inpainter("sd", **tiny_backend_options("inpainting", "sd"))``.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import json
import optparse
import pickle
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch

from datagen.backends import import_from_checkout
from datagen.harmonization.pih import CHECKOUT_MODULES as PIH_MODULES
from datagen.harmonization.pih import INFERENCE_KWARGS as PIH_INFERENCE_KWARGS
from datagen.inpainting.mat import CHECKOUT_MODULES as MAT_MODULES

TINY_SAM_CONFIG = dict(
    encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1], image_size=256,
    patch_size=16, prompt_embed_dim=32, window_size=4, decoder_mlp_dim=64, decoder_num_heads=2,
    iou_head_hidden_dim=32, mask_in_chans=4,
)


@dataclass(frozen=True)
class TinySam:
    checkpoint: Path
    config_path: Path
    sam_config: dict

    def options(self) -> dict:
        """Keyword arguments for ``build_masker("sam", ...)``."""
        return {"checkpoint": self.checkpoint, "model_type": "custom", "sam_config": self.sam_config}


@dataclass(frozen=True)
class TinyCheckout:
    checkout: Path
    checkpoint: Path

    def options(self) -> dict:
        """Keyword arguments for ``build_inpainter("mat", ...)`` / ``build_harmonizer("pih", ...)``."""
        return {"checkout": self.checkout, "checkpoint": self.checkpoint}


@dataclass(frozen=True)
class TinyModels:
    sam: TinySam
    lama: Path
    sd: Path
    mat: TinyCheckout
    pih: TinyCheckout


def _seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------- SAM

def make_tiny_sam(folder: str | Path, seed: int = 0) -> TinySam:
    from datagen.masking.sam import build_custom_sam

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seeded(seed)
    sam = build_custom_sam(**TINY_SAM_CONFIG)
    ckpt, cfg = folder / "sam_tiny.pth", folder / "sam_tiny.json"
    torch.save(sam.state_dict(), ckpt)
    cfg.write_text(json.dumps(TINY_SAM_CONFIG))
    return TinySam(ckpt, cfg, dict(TINY_SAM_CONFIG))


# --------------------------------------------------------------------------------------- LaMa

class TinyLama(torch.nn.Module):
    """LaMa's exported interface: (Bx3xHxW in [0,1], Bx1xHxW with 1 = hole) -> Bx3xHxW in [0,1].

    The wrapping is LaMa's own ``DefaultInpaintingTrainingModule.forward``
    (``saicinpainting/training/trainers/default.py``): the generator sees ``img * (1 - mask)``
    concatenated with ``mask`` and the result is ``mask * predicted + (1 - mask) * img``. One
    stride-2 stage stands in for the generator, so like the real network it only accepts padded
    sizes (``bin/predict.py`` pads to multiples of 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = torch.nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.up = torch.nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert image.shape[2] % 8 == 0 and image.shape[3] % 8 == 0, "LaMa needs sides that are multiples of 8"
        assert bool(((mask == 0) | (mask == 1)).all()), "LaMa mask must be 0/1"
        masked = image * (1 - mask)
        predicted = torch.sigmoid(self.up(torch.relu(self.down(torch.cat([masked, mask], dim=1)))))
        return mask * predicted + (1 - mask) * image


def make_tiny_lama(folder: str | Path, seed: int = 0) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seeded(seed)
    path = folder / "big-lama.pt"
    torch.jit.script(TinyLama().eval()).save(str(path))
    return path


# ----------------------------------------------------------------------------- SD inpainting

def tiny_clip_tokenizer():
    """Byte-level CLIP BPE with no merges: every character is a token (offline, ~500 entries)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())  # the 256 characters CLIP's byte-level BPE maps bytes to
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in chars:
        vocab[ch] = len(vocab)
    for ch in chars:
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _tiny_safety_checker(flag_everything: bool):
    """A real ``StableDiffusionSafetyChecker`` on a tiny CLIP vision model, and its feature
    extractor. ``flag_everything`` sets every concept threshold below any cosine, so each image is
    flagged (and blacked out) the way the real checker flags an NSFW one."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    checker = StableDiffusionSafetyChecker(config).eval()
    if flag_everything:
        with torch.no_grad():
            checker.concept_embeds_weights.fill_(-2.0)  # cosine - threshold > 0 for every concept
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return checker, extractor


def make_tiny_sd_inpaint(folder: str | Path, seed: int = 0, *, flag_everything_nsfw: bool = False) -> Path:
    """Save a tiny ``StableDiffusionInpaintPipeline`` to ``folder`` and return it (native 64 px).
    ``flag_everything_nsfw``: include a safety checker that flags every image."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    _seeded(seed)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=9, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=64,
    )
    checker, extractor = _tiny_safety_checker(True) if flag_everything_nsfw else (None, None)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1), safety_checker=checker,
        feature_extractor=extractor, requires_safety_checker=flag_everything_nsfw,
    )
    pipe.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------- MAT

_MAT_CUSTOM_OP = '''
    """Stand-in for one of MAT's torch_utils/ops modules (StyleGAN2-ADA's): ``_init()`` tries to
    build the CUDA plugin once and returns whether it loaded; on failure it warns and the op falls
    back to its reference implementation. Here no plugin is ever built."""
    import warnings

    _inited = False
    _plugin = None

    def _init():
        global _inited
        if not _inited:
            _inited = True
            warnings.warn("Failed to build CUDA kernels. Falling back to slow reference implementation.")
        return _plugin is not None
'''

_MAT_FILES = {
    "dnnlib/__init__.py": "from . import util  # noqa: F401\n",
    "dnnlib/util.py": '''
        """Stand-in for MAT's dnnlib.util: only the local-file branch of open_url."""
        def open_url(url, cache_dir=None, num_attempts=10, verbose=True, return_filename=False, cache=True):
            return url if return_filename else open(url, "rb")
    ''',
    "legacy.py": '''
        """Stand-in for MAT's legacy.py: unpickle a network dict and check its fields."""
        import pickle
        import torch

        def load_network_pkl(f, force_fp16=False):
            data = pickle.Unpickler(f).load()
            data.setdefault("training_set_kwargs", None)
            data.setdefault("augment_pipe", None)
            for key in ("G", "D", "G_ema"):
                assert isinstance(data[key], torch.nn.Module), key
            return data
    ''',
    "torch_utils/__init__.py": "",
    "torch_utils/ops/__init__.py": "",
    "torch_utils/ops/bias_act.py": _MAT_CUSTOM_OP,
    "torch_utils/ops/upfirdn2d.py": _MAT_CUSTOM_OP,
    "networks/__init__.py": "",
    "networks/mat.py": '''
        """Stand-in for MAT's networks/mat.py: the Generator's constructor and call signature.

        Like the real one it needs sides that are multiples of img_resolution, has 'const' noise
        buffers of exactly img_resolution x img_resolution, draws dropout from torch's global RNG,
        and returns images in [-1, 1] with the known pixels (mask 1) copied through.
        """
        import torch
        import torch.nn.functional as F

        class Generator(torch.nn.Module):
            def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, synthesis_kwargs={},
                         mapping_kwargs={}):
                super().__init__()
                self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
                self.img_resolution, self.img_channels = img_resolution, img_channels
                self.mapping = torch.nn.Linear(z_dim + c_dim, w_dim)
                self.style = torch.nn.Linear(w_dim, img_channels)
                self.to_rgb = torch.nn.Conv2d(img_channels + 1, img_channels, 3, padding=1)
                self.register_buffer("noise_const", torch.randn([img_resolution, img_resolution]))
                self.calls = []

            def forward(self, images_in, masks_in, z, c, truncation_psi=1, truncation_cutoff=None,
                        skip_w_avg_update=False, noise_mode="random", return_stg1=False):
                h, w = images_in.shape[-2:]
                assert h % self.img_resolution == 0 and w % self.img_resolution == 0, (h, w)
                ws = self.mapping(torch.cat([z, c], dim=1).float())
                if noise_mode == "const":
                    noise = self.noise_const.expand(h, w)  # fails unless h == w == img_resolution
                elif noise_mode == "random":
                    noise = torch.randn([h, w], device=images_in.device)
                else:
                    noise = torch.zeros([h, w], device=images_in.device)
                mul = F.dropout(torch.ones_like(masks_in) * 0.5, training=True)
                x = torch.cat([images_in * masks_in, masks_in - 0.5], dim=1)
                img = torch.tanh(self.to_rgb(x) + self.style(ws)[..., None, None] + 0.2 * noise + mul)
                img = img * (1 - masks_in) + images_in * masks_in
                self.calls.append(dict(images=images_in.detach().cpu().clone(), masks=masks_in.detach().cpu().clone(),
                                       z=z.detach().cpu().clone(), c=c.detach().cpu().clone(),
                                       truncation_psi=truncation_psi, noise_mode=noise_mode,
                                       output=img.detach().cpu().clone()))
                return img
    ''',
}


def _write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def make_fake_mat_checkout(folder: str | Path, seed: int = 0) -> TinyCheckout:
    """``folder/MAT`` stand-in checkout + ``folder/MAT/pretrained/tiny.pkl`` (dict with G, D,
    G_ema pickled from the checkout's own classes, like MAT's training loop writes them)."""
    root = Path(folder) / "MAT"
    _write_files(root, _MAT_FILES)
    mat = import_from_checkout(root, "networks.mat", backend="mat", option="checkout", owns=MAT_MODULES)
    _seeded(seed)
    G = mat.Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=512, img_channels=3).eval()
    pkl = root / "pretrained" / "tiny.pkl"
    pkl.parent.mkdir(exist_ok=True)
    with open(pkl, "wb") as f:
        pickle.dump({"G": G, "D": torch.nn.Linear(1, 1), "G_ema": G, "augment_pipe": None,
                     "training_set_kwargs": None}, f)
    return TinyCheckout(root, pkl)


# ---------------------------------------------------------------------------------------- PIH

_PIH_MODEL = '''
    """Stand-in for PIH's model.py: Model_Composite_PL with the released constructor arguments,
    forward(background, input_image, input_mask) -> (pl_composite, output, params, pl_table), and
    the pl_table / gainmap attributes inference.py reads."""
    import torch
    import torch.nn.functional as FN


    class LUT3D(torch.nn.Module):
        """lut: Bx3xDxDxD indexed [channel, B, G, R]; img: Bx3xHxW in [0, 1]."""

        def forward(self, lut, img):
            grid = (img * 2.0 - 1.0).permute(0, 2, 3, 1).contiguous().unsqueeze(1)
            return FN.grid_sample(lut, grid, mode="bilinear", padding_mode="border", align_corners=False).squeeze(2)


    class Model_Composite_PL(torch.nn.Module):
        def __init__(self, dim=32, sigmoid=True, scaling=False, masking=False, brush=False, nosig=False,
                     onlyupsample=False, maskoffset=0.5, maskconvkernel=1, swap=False, lut=False, lutdim=16,
                     joint=False, PIHNet_bool=False, Vit_bool=False, Eff_bool=False, aggupsample=False,
                     depthmap=False, bgshadow=False, ibn=False, dual=False, lowres=False, high_res=False,
                     lrdata=False, light=False):
            super().__init__()
            self.dim = dim
            self.PL = torch.nn.Sequential(
                torch.nn.Conv2d(7, 8, 3, stride=4, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                torch.nn.Flatten(), torch.nn.Linear(8, dim * 3))
            self.PL3D = LUT3D()
            self.gainnet = torch.nn.Sequential(
                torch.nn.Conv2d(10, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1))
            self.calls = []

        def forward(self, background, input_image, input_mask):
            b = input_image.shape[0]
            assert input_image.shape[-2:] == (512, 512) and input_mask.shape[1] == 1, "inference.py feeds 512x512"
            assert 0 <= float(input_mask.min()) and float(input_mask.max()) <= 1, "mask is ToTensor of an L image"
            x = torch.cat((input_image, background, input_mask), 1)
            curves = torch.sigmoid(self.PL(x)).reshape(b, 3, self.dim)
            d = self.dim
            pl_table = torch.cat((
                curves[:, 0, None, None, :][:, None].expand(b, 1, d, d, d),
                curves[:, 1, None, :, None][:, None].expand(b, 1, d, d, d),
                curves[:, 2, :, None, None][:, None].expand(b, 1, d, d, d)), 1)
            self.pl_table = pl_table.clone()
            pl_composite = self.PL3D(pl_table, input_image) * input_mask + (1 - input_mask) * background
            gain = 0.75 + 0.5 * torch.sigmoid(self.gainnet(torch.cat((input_image, background, input_mask,
                                                                       pl_composite), 1)))
            self.gainmap = gain.clone()
            output = pl_composite * gain * input_mask + (1 - input_mask) * background
            self.calls.append(dict(background=background.detach().cpu().clone(),
                                   image=input_image.detach().cpu().clone(), mask=input_mask.detach().cpu().clone()))
            return pl_composite, output, [curves[0, 0], curves[0, 1], curves[0, 2]], pl_table
'''


def pih_training_options(argv: list[str] | None = None) -> optparse.Values:
    """What ``PIH_train.py`` pickles as ``args``: the ``optparse.Values`` its ``OptionParser``
    returns -- strings, ints, floats, ``True`` and ``None`` (flags not given). A few of its real
    options with their real types and defaults stand in for the full list."""
    parser = optparse.OptionParser()
    parser.add_option("--datadir", "--dd")
    parser.add_option("-g", "--gpu_id", dest="gpu_id", type="int")
    parser.add_option("--learning-rate", "--lr", default=1e-5, type="float")
    parser.add_option("--batchsize", "--bs", dest="batchsize", default=4, type="int")
    parser.add_option("--pl-dim", default=32, type="int")
    parser.add_option("--maskoffset", default=0.5, type="float")
    for flag in ("--masking", "--brush", "--swap", "--onlyupsample", "--aggupsample", "--onlysaveg", "--lightmodel"):
        parser.add_option(flag, action="store_true")
    parser.add_option("--maskingcp")
    options, _ = parser.parse_args(argv if argv is not None else [
        "--datadir", "/data/iHarmony4", "--masking", "--brush", "--maskoffset", "0.6", "--swap", "--onlyupsample",
        "--aggupsample", "--onlysaveg", "--bs", "8"])
    return options


def make_fake_pih_checkout(folder: str | Path, seed: int = 0) -> TinyCheckout:
    """``folder/PIH`` stand-in checkout + ``pretrained/ckpt_g39.pth`` saved the way PIH_train.py's
    ``save_model`` saves it with ``--onlysaveg``: ``{"epoch", "state_dict", "args": optparse.Values}``."""
    root = Path(folder) / "PIH"
    _write_files(root, {"model.py": _PIH_MODEL})
    model_module = import_from_checkout(root, "model", backend="pih", option="checkout", owns=PIH_MODULES)
    _seeded(seed)
    model = model_module.Model_Composite_PL(**PIH_INFERENCE_KWARGS, light=False, Eff_bool=False)
    ckpt = root / "pretrained" / "ckpt_g39.pth"
    ckpt.parent.mkdir(exist_ok=True)
    torch.save({"epoch": 39, "state_dict": model.state_dict(), "args": pih_training_options()}, ckpt)
    return TinyCheckout(root, ckpt)


# ------------------------------------------------------------------------- cached, per process

@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run torch with ``n`` intra-op threads, then restore. Tiny models gain nothing from threads,
    and on a busy 2-core machine spinning OpenMP workers make them 5-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _cache_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tiny-models-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def tiny_models() -> TinyModels:
    """All tiny models, built once per process (a few seconds, mostly imports) in a temporary folder."""
    root = _cache_dir()
    return TinyModels(
        sam=make_tiny_sam(root / "sam"), lama=make_tiny_lama(root / "lama"), sd=make_tiny_sd_inpaint(root / "sd"),
        mat=make_fake_mat_checkout(root / "mat"), pih=make_fake_pih_checkout(root / "pih"),
    )


def tiny_backend_options(stage: str, name: str) -> dict:
    """Builder keyword arguments that make backend ``name`` of ``stage`` ("masking",
    "inpainting", "harmonization") run on the tiny models; CPU, few diffusion steps."""
    options: dict[tuple[str, str], dict] = {
        ("masking", "annotation"): {},
        ("masking", "grabcut"): {},
        ("inpainting", "opencv"): {},
        ("harmonization", "classical"): {},
    }
    if (stage, name) in options:
        return dict(options[(stage, name)])
    models = tiny_models()
    learned = {
        ("masking", "sam"): lambda: {**models.sam.options(), "device": "cpu"},
        ("inpainting", "lama"): lambda: {"checkpoint": models.lama, "device": "cpu"},
        ("inpainting", "sd"): lambda: {"model_dir": models.sd, "device": "cpu", "steps": 2},
        ("inpainting", "mat"): lambda: {**models.mat.options(), "device": "cpu"},
        ("harmonization", "pih"): lambda: {**models.pih.options(), "device": "cpu"},
    }
    if (stage, name) not in learned:
        raise KeyError(f"no tiny options for {stage} backend {name!r}")
    return learned[(stage, name)]()
