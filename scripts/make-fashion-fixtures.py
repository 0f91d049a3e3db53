#!/usr/bin/python3
"""Train the two Fashion-MNIST fixtures of issue 13 and export them to ONNX, with 20 held-out test images.

Run with Debian's python (torch 1.13, onnx 1.12, PIL; the pyenv python3 on PATH has no torch) after
`apt-get install python3-torch python3-onnx python3-numpy python3-pil dataset-fashion-mnist`:

    /usr/bin/python3 scripts/make-fashion-fixtures.py [DATADIR=/usr/share/datasets/fashion-mnist] [OUTDIR=fixtures]

Data: Debian's `dataset-fashion-mnist` (Zalando's Fashion-MNIST, idx files, gzipped): the 60,000
training images train, the 10,000 test images are held out (test accuracy below; never seen in
training). The 20 PNGs written to OUTDIR/fashion/ are test images 0..19 (t10k-images-idx3-ubyte.gz).

Both nets take input [N, 1, 28, 28] in pixel units minus 127.5 (as fixtures/lenet.onnx and the product's
PNG preprocessing with the model's `netmoments.preprocessing` metadata: scale 255, offset -127.5).
Training scales the input by 1/127.5 for stability; the export folds that scale into the first conv's
weights (conv(x / 127.5; W) + b = conv(x; W / 127.5) + b).

    fashion-resnet.onnx   a residual net with BatchNorm (BatchNormalization nodes kept in the graph:
                          exported with TrainingMode.PRESERVE on an eval-mode model, so torch does not fold
                          them into the convs):
                          conv 16@3x3 pad 1, BN, ReLU, maxpool 2 -> [16,14,14];
                          residual block: conv 16@3x3 pad 1, BN, ReLU, conv 16@3x3 pad 1, BN, Add(skip), ReLU;
                          average pool 2 -> [16,7,7]; flatten; Gemm 784 -> 10
    fashion-tanh.onnx     a net with smooth units inside:
                          conv 16@5x5, Tanh, maxpool 2 -> [16,12,12]; conv 32@5x5, ReLU, maxpool 2 -> [32,4,4];
                          flatten; Gemm 512 -> 64, Sigmoid; Gemm 64 -> 10

Seeded (torch seed 0) with deterministic algorithms and one thread; EPOCHS (env FASHION_EPOCHS, default 2)
passes of Adam (lr 2e-3, batch 128, cosine schedule) over the 60,000 training images.
"""
import gzip
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

SEED = 0
EPOCHS = int(os.environ.get('FASHION_EPOCHS', '2'))
BATCH = 128
N_PNG = 20
PREPROCESSING = {
    'scale': 255,
    'offset': -127.5,
    'layout': 'NCHW',
    'source': 'pixel in [0,255] minus 127.5',
}
CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']


def read_idx(path):
    """An idx file (gzipped): magic (0, 0, type 0x08 = ubyte, ndim), big-endian int32 dims, then the bytes."""
    with gzip.open(path, 'rb') as f:
        data = f.read()
    assert data[0] == 0 and data[1] == 0 and data[2] == 0x08, path
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_scale = 1 / 127.5
        self.conv0 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(16)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def first_conv(self):
        return self.conv0

    def forward(self, x):
        if self.input_scale != 1.0:
            x = x * self.input_scale
        x = F.max_pool2d(F.relu(self.bn0(self.conv0(x))), 2)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = F.relu(x + y)
        x = F.avg_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


class TanhNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_scale = 1 / 127.5
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(512, 64)
        self.fc2 = nn.Linear(64, 10)

    def first_conv(self):
        return self.conv1

    def forward(self, x):
        if self.input_scale != 1.0:
            x = x * self.input_scale
        x = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.sigmoid(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return int((pred == y).sum())


def train(model, x, y, gen):
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = EPOCHS * ((len(x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    t0 = time.process_time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f'  epoch {epoch + 1}  loss {total / len(x):.4f}  ({time.process_time() - t0:.0f} CPU s)', flush=True)
    return time.process_time() - t0


def export(model, path, x_test, y_test, props, training_mode):
    """Fold the input scale into the first conv, check the folded model, export with a dynamic batch 'N'."""
    model.eval()
    with torch.no_grad():
        ref = model(x_test[:500])
        model.first_conv().weight.mul_(model.input_scale)
        model.input_scale = 1.0
        diff = (model(x_test[:500]) - ref).abs().max().item()
    print(f'  folded export vs trained model: max |diff| = {diff:.2e}')
    correct = accuracy(model, x_test, y_test)
    torch.onnx.export(model, x_test[:1].clone(), path, opset_version=13, input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}}, do_constant_folding=True,
                      training=training_mode)
    m = onnx.load(path)
    del m.metadata_props[:]
    props = {
        'netmoments.preprocessing': json.dumps(PREPROCESSING, separators=(',', ':')),
        'netmoments.test_accuracy': f'{correct / len(y_test):.4f}',
        'netmoments.test': f'{correct}/{len(y_test)} of the Fashion-MNIST test set (t10k, Debian dataset-fashion-mnist)',
        **props,
    }
    for k, v in props.items():
        e = m.metadata_props.add()
        e.key = k
        e.value = v
    onnx.checker.check_model(m)
    onnx.save(m, path)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f'  {path}: {os.path.getsize(path)} bytes, ops {ops}, test {correct}/{len(y_test)} = {100 * correct / len(y_test):.2f}%')
    return correct, ops


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else '/usr/share/datasets/fashion-mnist'
    out = sys.argv[2] if len(sys.argv) > 2 else 'fixtures'
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    train_px = read_idx(os.path.join(data, 'train-images-idx3-ubyte.gz'))
    train_lb = read_idx(os.path.join(data, 'train-labels-idx1-ubyte.gz'))
    test_px = read_idx(os.path.join(data, 't10k-images-idx3-ubyte.gz'))
    test_lb = read_idx(os.path.join(data, 't10k-labels-idx1-ubyte.gz'))
    assert train_px.shape == (60000, 28, 28) and test_px.shape == (10000, 28, 28)
    to_x = lambda px: torch.from_numpy(px.astype(np.float32) - 127.5).unsqueeze(1)  # model units
    x_train, y_train = to_x(train_px), torch.from_numpy(train_lb.astype(np.int64))
    x_test, y_test = to_x(test_px), torch.from_numpy(test_lb.astype(np.int64))

    os.makedirs(os.path.join(out, 'fashion'), exist_ok=True)
    for i in range(N_PNG):
        Image.fromarray(test_px[i], mode='L').save(os.path.join(out, 'fashion', f'test-{i:02d}.png'), optimize=True)
    with open(os.path.join(out, 'fashion', 'labels.csv'), 'w') as f:
        f.write('file,label\n')
        for i in range(N_PNG):
            f.write(f'test-{i:02d}.png,{int(test_lb[i])}\n')

    training = f'60000 Fashion-MNIST training images, {EPOCHS} epochs, Adam lr 2e-3 cosine, batch {BATCH}, torch seed {SEED}, 1 thread'
    nets = [
        ('fashion-resnet.onnx', ResNet, torch.onnx.TrainingMode.PRESERVE,
         'conv 16@3x3, BN, ReLU, maxpool 2, [conv 16@3x3, BN, ReLU, conv 16@3x3, BN] + skip, ReLU, avgpool 2, flatten, fc 10'),
        ('fashion-tanh.onnx', TanhNet, torch.onnx.TrainingMode.EVAL,
         'conv 16@5x5, Tanh, maxpool 2, conv 32@5x5, ReLU, maxpool 2, flatten, fc 64, Sigmoid, fc 10'),
    ]
    for k, (name, cls, mode, arch) in enumerate(nets):
        torch.manual_seed(SEED + k)
        gen = torch.Generator().manual_seed(SEED + k)
        model = cls()
        print(f'{name}:', flush=True)
        cpu = train(model, x_train, y_train, gen)
        export(model, os.path.join(out, name), x_test, y_test,
               {'netmoments.training': f'{training}; {cpu:.0f} CPU s', 'netmoments.architecture': arch}, mode)


if __name__ == '__main__':
    main()
