#!/usr/bin/python3
"""Make small torch exports of the activations and layers modern nets use, for bench/export-corpus.mjs:
Swish/SiLU, GELU (erf and opset-20 forms), Mish, HardSwish and HardSigmoid (as ops and as torch
decomposes them before opset 14), Elu, Selu, Celu, Softsign, ReLU6 with depthwise convolutions and
BatchNorm, dilated and asymmetrically padded convolutions, Resize + Concat skips, BatchNorm1d with a
Sigmoid output, LogSoftmax, opset 9, GlobalMaxPool, LayerNorm (opset 17), a channels-last input with
a fixed batch, two outputs, maxout (Max/Min of two noisy tensors), reflection padding, a MatMul with
the weights on the left, Split/Abs, and a squeeze-and-excitation block.

    /usr/bin/python3 scripts/make-export-corpus.py [OUT_DIR]      # default /tmp/netmoments-exports

Needs Debian's python3-torch and python3-onnx. Random weights (seeded), BatchNorm statistics drawn
around 0 and 1. The models are never committed; this script is the record of what they are.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
OUT = sys.argv[1] if len(sys.argv) > 1 else '/tmp/netmoments-exports'
os.makedirs(OUT, exist_ok=True)


def export(name, model, shape, opset=13, dynamic=True, outputs=('output',)):
    model.eval()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    dyn = {'input': {0: 'N'}, **{o: {0: 'N'} for o in outputs}} if dynamic else None
    torch.onnx.export(model, torch.randn(*shape), f'{OUT}/{name}.onnx', input_names=['input'], output_names=list(outputs),
                      opset_version=opset, dynamic_axes=dyn)
    print('wrote', name)


class Act(nn.Module):
    """Two layers of an activation: conv (1x28x28 -> 8x14x14 -> 8x7x7) or fully connected (12 -> 32 -> 32)."""

    def __init__(self, act, conv=True):
        super().__init__()
        self.act, self.conv = act, conv
        if conv:
            self.c1, self.c2, self.fc = nn.Conv2d(1, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1), nn.Linear(8 * 7 * 7, 10)
        else:
            self.l1, self.l2, self.fc = nn.Linear(12, 32), nn.Linear(32, 32), nn.Linear(32, 4)

    def forward(self, x):
        if self.conv:
            return self.fc(self.act(self.c2(self.act(self.c1(x)))).flatten(1))
        return self.fc(self.act(self.l2(self.act(self.l1(x)))))


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16)
        self.dw, self.b2 = nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.BatchNorm2d(16)
        self.pw, self.b3, self.fc = nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu6(self.b1(self.c1(x)))
        x = F.relu6(self.b2(self.dw(x)))
        x = F.relu6(self.b3(self.pw(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Dilated(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, dilation=2, padding=2)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=(0, 1))
        self.fc = nn.Linear(8 * 13 * 14, 10)

    def forward(self, x):
        return self.fc(F.leaky_relu(self.c2(F.leaky_relu(self.c1(x), 0.1)), 0.1).flatten(1))


class ResizeConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(12, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        a = F.relu(self.c1(x))
        b = F.interpolate(F.relu(self.c2(F.max_pool2d(a, 2))), scale_factor=2, mode='nearest')
        return self.fc(F.relu(self.c3(torch.cat([a, b], 1))).flatten(1))


class BatchNorm1dSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.bn, self.d, self.l2 = nn.Linear(20, 64), nn.BatchNorm1d(64), nn.Dropout(0.3), nn.Linear(64, 3)

    def forward(self, x):
        return torch.sigmoid(self.l2(self.d(F.relu(self.bn(self.l1(x))))))


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.se1, self.se2, self.fc = nn.Conv2d(3, 8, 3, 2, 1), nn.Linear(8, 4), nn.Linear(4, 8), nn.Linear(8, 5)

    def forward(self, x):
        x = F.hardswish(self.c1(x))
        w = F.hardsigmoid(self.se2(F.relu(self.se1(x.mean((2, 3))))))
        return self.fc((x * w[:, :, None, None]).mean((2, 3)))


class ConvLogSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.fc = nn.Conv2d(1, 6, 5), nn.Linear(6 * 12 * 12, 10)

    def forward(self, x):
        return F.log_softmax(self.fc(F.max_pool2d(F.relu(self.c(x)), 2).flatten(1)), 1)


class Opset9(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.b, self.fc = nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.Linear(6 * 12 * 12, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b(self.c(x))), 2)
        return self.fc(x.view(x.size(0), -1))


class GlobalMax(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.c2, self.fc = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, stride=2), nn.Linear(8, 4)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.c2(F.relu(self.c(x)))), 3, stride=1, padding=1, count_include_pad=False)
        return self.fc(F.adaptive_max_pool2d(x, 1).flatten(1))


class LayerNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.ln, self.l2 = nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 4)

    def forward(self, x):
        return self.l2(F.relu(self.ln(self.l1(x))))


class ChannelsLastFixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        return self.fc(F.relu(self.c(x.permute(0, 3, 1, 2))).reshape(4, -1))


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = F.relu(self.l1(x))
        return self.l2(h), h


class Maxout(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(12, 16), nn.Linear(12, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.c(torch.max(self.a(x), self.b(x)) + torch.min(self.a(x), torch.zeros(1)))


class ReflectPad(nn.Module):
    def __init__(self):
        super().__init__()
        self.p, self.c, self.p2 = nn.ReflectionPad2d(2), nn.Conv2d(1, 4, 5), nn.ZeroPad2d((1, 0, 1, 0))
        self.c2, self.fc = nn.Conv2d(4, 4, 2, stride=2), nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        x = F.relu(self.c(self.p(x)))
        return self.fc(F.relu(self.c2(self.p2(x))[:, :, :14, :14]).flatten(1))


class MatMulLeft(nn.Module):
    def __init__(self):
        super().__init__()
        self.W, self.b, self.V = nn.Parameter(torch.randn(16, 6) * 0.3), nn.Parameter(torch.randn(16, 1) * 0.1), nn.Parameter(torch.randn(2, 16) * 0.3)

    def forward(self, x):
        return (self.V @ F.relu(self.W @ x.t() + self.b)).t()


class ChunkAbs(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(10, 32), nn.Linear(16, 4)

    def forward(self, x):
        a, b = torch.chunk(self.l1(x), 2, dim=1)
        return self.l2(F.relu(a) * 0.5 + torch.tanh(b) - F.relu(-a).abs())


export('01-depthwise-relu6', Depthwise(), (1, 3, 32, 32))
export('02-dilated-leaky-asympad', Dilated(), (1, 1, 28, 28))
export('03-unet-resize-concat', ResizeConcat(), (1, 1, 28, 28), opset=11)
export('04-mlp-bn1d-sigmoid-out', BatchNorm1dSigmoid(), (1, 20))
export('05-hardswish-se', SqueezeExcite(), (1, 3, 16, 16), opset=14)
export('06-logsoftmax-out', ConvLogSoftmax(), (1, 1, 28, 28))
export('07-opset9-bn-view', Opset9(), (1, 1, 28, 28), opset=9)
export('08-globalmaxpool-avgpad', GlobalMax(), (1, 3, 20, 20))
export('09-elu-gelu-selu-softplus', nn.Sequential(nn.Linear(10, 32), nn.ELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 32), nn.SELU(),
                                                  nn.Linear(32, 32), nn.Softplus(), nn.Linear(32, 4)), (1, 10))
export('10-layernorm-opset17', LayerNorm(), (1, 16), opset=17)
export('11-nhwc-fixed-batch4', ChannelsLastFixed(), (4, 8, 8, 3), dynamic=False)
export('12-two-outputs', TwoOutputs(), (1, 8), outputs=('logits', 'features'))
export('13-maxout-min', Maxout(), (1, 12))
export('14-reflectpad-slice', ReflectPad(), (1, 1, 28, 28), opset=11)
export('15-matmul-left-transpose', MatMulLeft(), (1, 6))
export('16-chunk-split-abs', ChunkAbs(), (1, 10))
torch.manual_seed(1)
export('17-swish-conv', Act(lambda x: x * torch.sigmoid(x)), (1, 1, 28, 28))
export('18-gelu-erf-mlp', Act(F.gelu, conv=False), (1, 12))
export('19-mish-conv', Act(F.mish), (1, 1, 28, 28))
export('20-hardswish-opset13', Act(F.hardswish), (1, 1, 28, 28))
export('21-silu-opset14', Act(F.silu), (1, 1, 28, 28), opset=14)
export('22-elu-mlp', Act(F.elu, conv=False), (1, 12))
export('23-selu-celu-mlp', Act(lambda x: F.celu(F.selu(x), 0.7), conv=False), (1, 12))
export('24-hardsigmoid-softsign-mlp', Act(lambda x: F.softsign(F.hardsigmoid(x) * 4 - 2), conv=False), (1, 12))
