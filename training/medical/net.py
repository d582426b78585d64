"""Small U-Net for breast-ultrasound lesion segmentation (+ optional malignancy head).

The graph takes a 256x256 normalised image, works internally at 128x128 (average-pooled) to keep
CPU inference cheap, and returns a sigmoid probability map upsampled back to 256x256.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class TinyUNet(nn.Module):
    def __init__(self, ch=(16, 32, 48, 64, 96), with_malignancy=True, dropout=0.2):
        super().__init__()
        self.with_malignancy = with_malignancy
        self.enc = nn.ModuleList()
        cin = 1
        for c in ch:
            self.enc.append(block(cin, c))
            cin = c
        self.dec = nn.ModuleList()
        for i in range(len(ch) - 1, 0, -1):
            self.dec.append(block(ch[i] + ch[i - 1], ch[i - 1]))
        self.head = nn.Conv2d(ch[0], 1, 1)
        if with_malignancy:
            self.cls = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * ch[-1], 1))

    def forward(self, x):
        h = F.avg_pool2d(x, 2)  # 256 -> 128
        skips = []
        for i, e in enumerate(self.enc):
            if i > 0:
                h = F.max_pool2d(h, 2)
            h = e(h)
            skips.append(h)
        bott = h
        for j, d in enumerate(self.dec):
            skip = skips[-2 - j]
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            h = d(torch.cat([h, skip], dim=1))
        logit = self.head(h)
        logit = F.interpolate(logit, scale_factor=2.0, mode="bilinear", align_corners=False)
        if not self.with_malignancy:
            return logit
        feat = torch.cat([bott.mean(dim=(2, 3)), bott.amax(dim=(2, 3))], dim=1)
        return logit, self.cls(feat)


class ExportWrapper(nn.Module):
    """Applies sigmoid inside the graph: image -> (lesion_probability, malignancy_probability)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        out = self.net(image)
        if self.net.with_malignancy:
            seg, cls = out
            return torch.sigmoid(seg), torch.sigmoid(cls)
        return torch.sigmoid(out)
