"""`python -m atomo_demo <command> ...`, from the pack's folder with the Python that runs ComfyUI.

Boots ComfyUI in this process (COMFYUI_PATH, or the ComfyUI the pack sits in), loads the pack as ComfyUI does and
hands the remaining arguments to the `main(argv)` of the pack's own copy of the command's module.
Commands: `claims` (the AtomoVideo claims measured on the demo model, `atomo_demo.claims`).
"""
import importlib
import sys

from atomo_train.host_boot import BootError, boot

COMMANDS = {"claims": "atomo_demo.claims"}  # command -> module with main(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m atomo_demo {{{','.join(COMMANDS)}}} [options]  (--help after a command for its "
              "options)", file=sys.stderr)
        return 2
    try:
        pack = boot(force_cpu=True)
    except BootError as e:
        print(f"atomo_demo: {e}", file=sys.stderr)
        return 2
    return importlib.import_module(f"{pack.__name__}.{COMMANDS[argv[0]]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
