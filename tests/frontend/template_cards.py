"""What the template browser should say about each shipped workflow, drawn onto its thumbnail.

ComfyUI 0.3.64 lists a pack's templates by file name only (`/workflow_templates`, in the order the file system
returns them) and frontend 1.27.10 shows, for a custom-node template, the file name as the title, the file name
again as the description and `workflows/<name>.jpg` as the picture; it reads no other metadata for custom nodes
(an index.json for custom nodes is ComfyUI_frontend pull request 9284, not merged). So the picture carries what a
card should say: a title, one or two sentences, and a badge saying which workflow to try first and which run on
public files. `render_workflows.py` draws them from this table; the README lists the workflows in this order.
"""
from __future__ import annotations

START_HERE, PUBLIC, NEEDS_WEIGHTS = "START HERE - nothing to download", "runs on public files", \
    "needs an AtomoVideo file (none published)"

# name -> (title, description, badge), recommended first
CARDS = {
    "demo": ("AtomoVideo demo", "The pack's own small model: 64x64 image-to-video and a 4-segment continuation. "
             "Runs on a CPU in about a minute.", START_HERE),
    "public_weights": ("PIA + IP-Adapter", "Image-to-video with public weights: an SD1.5 checkpoint, PIA, "
                       "IP-Adapter SD1.5 and the ViT-H CLIP vision encoder.", PUBLIC),
    "image_to_video": ("Image to video", "Animate one picture: 16 frames at 512x512 from AtomoVideo temporal "
                       "layers on your SD1.5 checkpoint.", NEEDS_WEIGHTS),
    "text_to_video": ("Text to video", "A first frame from the prompt, then animated as in image to video.",
                      NEEDS_WEIGHTS),
    "long_video": ("Long video", "48 frames in 16-frame segments by frame continuation, with drift control.",
                   NEEDS_WEIGHTS),
    "lora_controlnet": ("LoRA + ControlNet", "Image to video with an SD1.5 LoRA and a per-frame Canny ControlNet "
                        "from a control video.", NEEDS_WEIGHTS),
}
