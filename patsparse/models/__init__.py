"""CNN definitions written from scratch (no torchvision) and a name-based registry.

Use :func:`build_model` with one of :data:`MODEL_NAMES`; :func:`default_input_shape` gives the
batch-1 input each model expects (for export to TVM and benchmarking).
"""

from __future__ import annotations

from patsparse.models.digits import DigitsCNN
from patsparse.models.mobilenet import InvertedResidual, MobileNetV2, mobilenet_v2
from patsparse.models.registry import MODEL_NAMES, build_model, default_input_shape
from patsparse.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from patsparse.models.sr import SRNet
from patsparse.models.vgg import VGG, vgg16

__all__ = [
    "MODEL_NAMES",
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "DigitsCNN",
    "InvertedResidual",
    "MobileNetV2",
    "ResNet",
    "SRNet",
    "build_model",
    "default_input_shape",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "vgg16",
]
