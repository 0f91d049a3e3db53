#!/usr/bin/python3
"""Make ImageNet-size test models for bench/scale.mjs (issue 15): torchvision's AlexNet, VGG-11, ResNet-18,
SqueezeNet 1.1 and MobileNetV2 with random weights, exported to ONNX (opset 13, dynamic batch).

    /usr/bin/python3 scripts/make-imagenet-models.py [OUT_DIR]      # default /tmp/netmoments-imagenet

Needs Debian's python3-torch, python3-torchvision, python3-onnx and python3-numpy (no network: no
pretrained weights are downloaded). The weights are never committed; this script is the record.

Random init gives useless statistics: BatchNorm's running mean and variance are 0 and 1 (so the
activations grow or shrink layer by layer) and the logits are nearly equal. So, per model:
  1. BatchNorm calibration: a few batches of structured random images (smooth colour fields, edges
     and stripes, normalised as ImageNet inputs are) run in train mode with momentum None, which sets
     every running mean and variance to the cumulative average over the batches;
  2. the last linear (or 1x1 conv classifier) layer is rescaled so that the logits of the
     calibration images have standard deviation LOGIT_SD (a few units) across classes.
It also writes input.npy, one structured 3x224x224 image (float32, already normalised), to analyse.
"""
import os
import sys

import numpy as np
import torch
import torchvision

SEED = 20261206
LOGIT_SD = 3.0
BATCHES = 4
BATCH = 8
OPSET = 13

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def structured_images(gen, count):
    """Images in [0, 1]: a smooth colour field (bilinear upsampling of 4x4..16x16 noise) plus a few
    edges and stripes, then ImageNet normalisation."""
    out = []
    for _ in range(count):
        cells = int(torch.randint(4, 17, (1,), generator=gen))
        field = torch.rand(1, 3, cells, cells, generator=gen)
        img = torch.nn.functional.interpolate(field, size=(224, 224), mode="bilinear", align_corners=False)
        yy, xx = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
        angle = float(torch.rand(1, generator=gen)) * np.pi
        period = 8 + float(torch.rand(1, generator=gen)) * 40
        stripes = 0.5 + 0.5 * torch.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        weight = float(torch.rand(1, generator=gen)) * 0.5
        img = (1 - weight) * img + weight * stripes.view(1, 1, 224, 224)
        x0 = int(torch.randint(0, 200, (1,), generator=gen))
        img[:, :, :, x0:] = img[:, :, :, x0:] * 0.6
        out.append(img.clamp(0, 1))
    return (torch.cat(out) - MEAN) / STD


def last_linear(model):
    """The module that produces the logits (Linear, or SqueezeNet's 1x1 Conv classifier)."""
    last = None
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            last = m
    return last


def calibrate(model, gen):
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        if bns:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative moving average over the calibration batches
            model.train()
            for _ in range(BATCHES):
                model(structured_images(gen, BATCH))
        model.eval()
        x = structured_images(gen, BATCH)
        logits = model(x)
        sd = float(logits.std(dim=1).mean())
        last = last_linear(model)
        # logits = W h + b: scale W and b by LOGIT_SD / sd (ReLU after SqueezeNet's conv is
        # positively homogeneous, so the same scaling holds there)
        last.weight.mul_(LOGIT_SD / sd)
        if last.bias is not None:
            last.bias.mul_(LOGIT_SD / sd)
        logits = model(x)
        return sd, float(logits.std(dim=1).mean())


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "/tmp/netmoments-imagenet"
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(SEED)
    models = {
        "alexnet": torchvision.models.alexnet,
        "vgg11": torchvision.models.vgg11,
        "resnet18": torchvision.models.resnet18,
        "squeezenet1_1": torchvision.models.squeezenet1_1,
        "mobilenet_v2": torchvision.models.mobilenet_v2,
    }
    only = set(os.environ.get("MODELS", "").split(",")) - {""}
    for name, make in models.items():
        if only and name not in only:
            continue
        model = make(weights=None)
        before, after = calibrate(model, gen)
        path = os.path.join(out_dir, f"{name}.onnx")
        torch.onnx.export(
            model,
            structured_images(gen, 1),
            path,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
        print(f"{path}: logit sd across classes {before:.3g} -> {after:.3g}", flush=True)
    x = structured_images(torch.Generator().manual_seed(SEED + 1), 1)[0].numpy().astype(np.float32)
    np.save(os.path.join(out_dir, "input.npy"), x)
    print(f"{os.path.join(out_dir, 'input.npy')}: one structured image, 3x224x224, ImageNet-normalised")


if __name__ == "__main__":
    main()
