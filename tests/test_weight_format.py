"""The AtomoVideo weight format: round trip, metadata checks, refusal of unknown files."""
import json

import pytest
import torch
from safetensors.torch import save_file

from pack import core

WeightFormatError = core("errors", "WeightFormatError")
atomovideo_sites, sd15_layout = core("unet_sites", "atomovideo_sites", "sd15_layout")
load_temporal_weights, read_state_dict = core("weight_files", "load_temporal_weights", "read_state_dict")
AtomoVideoMetadata, fresh_weights, load_atomovideo, save_atomovideo = core(
    "weight_format", "AtomoVideoMetadata", "fresh_weights", "load_atomovideo", "save_atomovideo")

class Payload:
    """A pickled object of an arbitrary class: what weights_only loading must refuse."""


SMALL = sd15_layout(channel_mult=(1, 1), num_res_blocks=1)


def random_weights(**meta):
    w = fresh_weights(atomovideo_sites(SMALL), max_frames=24, image_tokens=4, **meta)
    g = torch.Generator().manual_seed(0)
    for sd in w.temporal.values():
        for k in sd:
            sd[k] = torch.randn(sd[k].shape, generator=g)
    w.conv_in_extra = torch.randn(320, 5, 3, 3, generator=g)
    w.image_proj = {"proj.weight": torch.randn(3072, 1024, generator=g), "norm.weight": torch.ones(768)}
    return w


def test_round_trip_keeps_every_tensor_and_metadata_field(tmp_path):
    w = random_weights(prediction="v", zero_terminal_snr=True)
    path = tmp_path / "a.safetensors"
    save_atomovideo(path, w)
    r = load_atomovideo(path)
    assert r.metadata == w.metadata
    assert r.metadata.channel_layout == ("noise:4", "mask:1", "image:4") and r.metadata.mask_polarity == "1=given"
    assert set(r.temporal) == set(w.temporal)
    for site, sd in w.temporal.items():
        assert set(r.temporal[site]) == set(sd)
        for k, v in sd.items():
            assert torch.equal(r.temporal[site][k], v), (site, k)
    assert torch.equal(r.conv_in_extra, w.conv_in_extra)
    assert set(r.image_proj) == set(w.image_proj) and all(torch.equal(r.image_proj[k], v)
                                                          for k, v in w.image_proj.items())
    layers = r.build_layers()
    assert len(layers) == len(atomovideo_sites(SMALL))
    assert load_temporal_weights(path).metadata == w.metadata  # the generic entry point agrees


def test_every_metadata_field_is_stored(tmp_path):
    w = random_weights()
    save_atomovideo(tmp_path / "b.safetensors", w)
    _, meta = read_state_dict(tmp_path / "b.safetensors")
    stored = json.loads(meta["atomovideo"])
    for field in ("format_version", "base", "in_channels", "channel_layout", "mask_polarity", "prediction",
                  "zero_terminal_snr", "max_frames", "image_tokens", "sites"):
        assert field in stored
    assert stored["max_frames"] == 24 and stored["image_tokens"] == 4 and stored["base"] == "sd15"


@pytest.mark.parametrize("change,message", [
    ({"base": "sdxl"}, "base family 'sdxl'"),
    ({"format_version": 99}, "format version 99"),
    ({"prediction": "x0"}, "prediction type 'x0'"),
    ({"in_channels": 8}, "does not describe 8 input channels"),
    ({"mask_polarity": "maybe"}, "mask polarity"),
])
def test_bad_metadata_is_refused(tmp_path, change, message):
    w = random_weights()
    for k, v in change.items():
        setattr(w.metadata, k, v)
    save_atomovideo(tmp_path / "c.safetensors", w)
    with pytest.raises(WeightFormatError, match=message):
        load_atomovideo(tmp_path / "c.safetensors")


def test_missing_layer_tensor_is_refused(tmp_path):
    w = random_weights()
    site = next(iter(w.temporal))
    w.temporal[site].pop(next(iter(w.temporal[site])))
    save_atomovideo(tmp_path / "d.safetensors", w)
    with pytest.raises(WeightFormatError, match=f"site {site}: missing keys"):
        load_atomovideo(tmp_path / "d.safetensors").build_layers()


def test_unknown_files_are_refused_saying_what_was_found(tmp_path):
    save_file({"encoder.weight": torch.zeros(2, 2), "decoder.bias": torch.zeros(2)}, str(tmp_path / "u.safetensors"))
    with pytest.raises(WeightFormatError, match=r"not a format this pack knows: found 2 tensors \(e\.g\. decoder"):
        load_temporal_weights(tmp_path / "u.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightFormatError, match="not a readable safetensors file"):
        load_temporal_weights(tmp_path / "junk.safetensors")
    torch.save({"state_dict": {"a": torch.zeros(1)}, "note": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(WeightFormatError, match=r"loading it could run code, so the pack does not\. Get the "
                       r"\.safetensors version") as e:
        load_temporal_weights(tmp_path / "evil.ckpt")
    assert "weights_only" not in str(e.value) and "False" not in str(e.value)  # never advice to load unsafely
    (tmp_path / "junk.ckpt").write_bytes(b"\x80\x02 not a pickle either")
    with pytest.raises(WeightFormatError, match=r"junk\.ckpt is neither a safetensors file nor a PyTorch "
                       r"checkpoint .* download it again from its source"):
        load_temporal_weights(tmp_path / "junk.ckpt")


def test_metadata_json_round_trip_and_unknown_fields():
    meta = AtomoVideoMetadata(max_frames=32)
    assert AtomoVideoMetadata.from_json(meta.to_json()) == meta
    d = json.loads(meta.to_json())
    d["future_field"] = 1
    with pytest.raises(WeightFormatError, match="future_field"):
        AtomoVideoMetadata.from_json(json.dumps(d))


@pytest.mark.parametrize("text,message", [
    ("{not json", r"not valid JSON \(error at character 1\).*get the file again from its source"),
    ("[1, 2]", r"not an object of fields; get the file again"),
    ('{"base": "sdxl"}', r"base family 'sdxl', but this pack supports 'sd15' only: use AtomoVideo weights made for "
                         r"SD1\.5$"),
    ('{"prediction": "x0"}', r"prediction type 'x0'.*; get the file again from its source, or write it with the "
                             r"pack's trainer"),
    ('{"channel_layout": 5}', r"a metadata field has the wrong type; get the file again"),
    ('{"max_frames": "many"}', r"a metadata field has the wrong type; get the file again"),
])
def test_bad_metadata_says_what_to_do(text, message):
    with pytest.raises(WeightFormatError, match=message) as e:
        AtomoVideoMetadata.from_json(text)
    assert "Expecting" not in str(e.value) and "line 1 column" not in str(e.value)  # no raw json module text


def test_weight_files_with_nan_or_inf_are_refused(tmp_path):
    read_file = core("weight_files", "read_file")

    for bad in (float("nan"), float("inf")):
        t = torch.zeros(3, 3)
        t[1, 2] = bad
        save_file({"ok": torch.ones(2), "layer.weight": t}, str(tmp_path / "bad.safetensors"))
        with pytest.raises(WeightFormatError, match=r"bad\.safetensors: tensor 'layer\.weight' holds NaN or infinite "
                                                    r"values .*download it again from its source"):
            read_file(tmp_path / "bad.safetensors")
    torch.save({"state_dict": {"w": torch.tensor([1.0, float("-inf")])}}, tmp_path / "bad.ckpt")
    with pytest.raises(WeightFormatError, match=r"tensor 'state_dict\.w' holds NaN"):
        read_file(tmp_path / "bad.ckpt")
    save_file({"w": torch.ones(2)}, str(tmp_path / "good.safetensors"))
    assert torch.equal(read_file(tmp_path / "good.safetensors")[0]["w"], torch.ones(2))
