"""Where temporal layers go in an SD1.5 UNet.

A UNet is described by its *layout*: for every block of `input_blocks`, `middle_block` and `output_blocks`
(ComfyUI's names), the kinds of its children in order (`res`, `transformer`, or anything else) and their
channels. AtomoVideo inserts a temporal convolution after every ResBlock and a temporal attention after every
spatial transformer; each insertion point is a `Site`, named `<block>.t<child index>`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

RES, TRANSFORMER = "res", "transformer"
CONV, ATTENTION = "conv", "attention"

Layout = dict  # block path -> list of (child kind, channels)


@dataclass(frozen=True)
class Site:
    block: str      # "input_blocks.1", "middle_block", "output_blocks.3"
    after: int      # index of the child the layer follows
    kind: str       # CONV or ATTENTION
    channels: int

    @property
    def name(self) -> str:
        return f"{self.block}.t{self.after}"

    def as_list(self) -> list:
        return [self.block, self.after, self.kind, self.channels]

    @classmethod
    def from_list(cls, v) -> "Site":
        block, after, kind, channels = v
        return cls(str(block), int(after), str(kind), int(channels))


def atomovideo_sites(layout: Layout, temporal_conv: bool = True) -> list[Site]:
    """A conv after every ResBlock (when enabled) and an attention after every transformer."""
    sites = []
    for block, children in layout.items():
        for i, (kind, channels) in enumerate(children):
            if kind == RES and temporal_conv:
                sites.append(Site(block, i, CONV, channels))
            elif kind == TRANSFORMER:
                sites.append(Site(block, i, ATTENTION, channels))
    return sites


def sd15_layout(model_channels: int = 320, channel_mult=(1, 2, 4, 4), num_res_blocks: int = 2,
                attention_levels=(0, 1, 2)) -> Layout:
    """The layout of a standard SD1.5 UNet, for writing weight files without the host."""
    layout: Layout = {"input_blocks.0": [("conv_in", model_channels)]}
    n = 1
    for level, mult in enumerate(channel_mult):
        ch = model_channels * mult
        for _ in range(num_res_blocks):
            layout[f"input_blocks.{n}"] = [(RES, ch)] + ([(TRANSFORMER, ch)] if level in attention_levels else [])
            n += 1
        if level != len(channel_mult) - 1:
            layout[f"input_blocks.{n}"] = [("downsample", ch)]
            n += 1
    top = model_channels * channel_mult[-1]
    layout["middle_block"] = [(RES, top), (TRANSFORMER, top), (RES, top)]
    n = 0
    for level in reversed(range(len(channel_mult))):
        ch = model_channels * channel_mult[level]
        for i in range(num_res_blocks + 1):
            children = [(RES, ch)] + ([(TRANSFORMER, ch)] if level in attention_levels else [])
            if level and i == num_res_blocks:
                children.append(("upsample", ch))
            layout[f"output_blocks.{n}"] = children
            n += 1
    return layout


def check_sites_fit(sites: Iterable[Site], layout: Layout) -> list[str]:
    """Problems placing `sites` into a model of `layout` (empty when every site fits)."""
    problems = []
    for s in sites:
        children = layout.get(s.block)
        if children is None:
            problems.append(f"{s.name}: the model has no block '{s.block}'")
        elif s.after >= len(children):
            problems.append(f"{s.name}: block '{s.block}' has only {len(children)} layers")
        elif children[s.after][1] != s.channels:
            problems.append(f"{s.name}: {s.channels} channels in the weights, {children[s.after][1]} in the model")
    return problems


@dataclass(frozen=True)
class CrossAttentionSite:
    """One cross-attention (attn2) of the UNet: the host's patch key `(block, number, index)` and its widths."""
    block: str      # "input", "middle", "output" (the host's transformer_options["block"] names)
    number: int
    index: int      # transformer block inside the SpatialTransformer
    inner: int      # query/key width
    context: int    # width of the tokens it attends to

    @property
    def key(self) -> tuple[str, int, int]:
        return self.block, self.number, self.index

    @property
    def name(self) -> str:
        return f"('{self.block}', {self.number})" + (f"[{self.index}]" if self.index else "")
