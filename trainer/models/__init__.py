"""SmartEdit model parts; each takes its sub-modules as constructor arguments."""
from trainer.models.bim import BIM, TwoWayTransformer, build_bim
from trainer.models.build import ModelConfig, build_model, read_checkpoint_config, save_model
from trainer.models.llava import LlavaLM
from trainer.models.qformer import QFormer
from trainer.models.smartedit import SmartEdit

__all__ = ["BIM", "TwoWayTransformer", "build_bim", "ModelConfig", "build_model", "read_checkpoint_config",
           "save_model", "LlavaLM", "QFormer", "SmartEdit"]
