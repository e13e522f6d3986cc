"""Which base models the temporal layers fit: SD1.5 text-to-image UNets with 4 input channels only."""
from ..atomo_core.errors import AtomoVideoError

# ComfyUI model-config class name -> what to call it in an error
_FAMILIES = {
    "SDXL": "an SDXL model", "SDXLRefiner": "an SDXL refiner", "SSD1B": "an SSD-1B (SDXL) model",
    "Segmind_Vega": "a Segmind Vega (SDXL) model", "KOALA_700M": "a KOALA (SDXL) model",
    "KOALA_1B": "a KOALA (SDXL) model", "SD20": "an SD2.x model", "SD21UnclipL": "an SD2.1 unCLIP model",
    "SD21UnclipH": "an SD2.1 unCLIP model", "SVD_img2vid": "a Stable Video Diffusion model",
    "SV3D_u": "an SV3D video model", "SV3D_p": "an SV3D video model", "Stable_Zero123": "a Zero123 model",
    "SD15_instructpix2pix": "an SD1.5 InstructPix2Pix model", "SDXL_instructpix2pix": "an SDXL InstructPix2Pix model",
}


def check_sd15_base(model, field: str = "model") -> None:
    """Refuse anything that is not a plain SD1.5 UNet, naming what it is."""
    config = getattr(getattr(model, "model", None), "model_config", None)
    family = type(config).__name__ if config is not None else type(model).__name__
    if family != "SD15":
        what = _FAMILIES.get(family, f"a {family} model")
        raise AtomoVideoError(field,
                              f"this is {what}; AtomoVideo temporal layers fit SD1.5 checkpoints only. "
                              "Load an SD1.5 checkpoint (e.g. v1-5-pruned-emaonly or a community SD1.5 model).")
    in_channels = config.unet_config.get("in_channels", 4)
    if in_channels != 4:
        raise AtomoVideoError(field,
                              f"this is an SD1.5 model with {in_channels} input channels (an inpainting model); "
                              "AtomoVideo widens the input itself. Use a regular 4-channel SD1.5 checkpoint.")
