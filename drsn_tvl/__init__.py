__version__ = "0.1.0"


# Two known import-time warnings of the stack, silenced here, before any drsn_tvl module imports timm or fastai:
# - torch >= 2.10 warns (FutureWarning) on fastai's import-time `@torch.jit.script` (fastai/layers.py): not actionable
#   for users, and it opened every `drsn-tvl` command's output;
# - tqdm.auto (through huggingface_hub, imported by timm) warns in a kernel without ipywidgets: text progress is what a
#   papermill run wants.
# Both filters match only their message, so every other warning still shows.
import warnings as _warnings
_warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
_warnings.filterwarnings('ignore', message='IProgress not found')
