"""`manage.py build_sandbox_image`: build the default sandbox image from a Debian rootfs."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mcpgateway.sandbox.errors import SandboxUnavailable
from mcpgateway.sandbox.image import Recipe, build_image


class Command(BaseCommand):
    help = "Build the sandbox image (debootstrap minbase + Python, docker import). Skips an up-to-date image."

    def add_arguments(self, parser):
        parser.add_argument("--tag", default=settings.SANDBOX["image"], help="image name (default: AGENTDECK_SANDBOX_IMAGE)")
        parser.add_argument("--suite", default="bookworm")
        parser.add_argument("--mirror", default="", help="Debian mirror (default: the one apt is configured with)")
        parser.add_argument("--package", action="append", dest="packages", default=None,
                            help="Debian package to include (repeatable; default: python3)")
        parser.add_argument("--force", action="store_true", help="rebuild even if the image is up to date")

    def handle(self, *args, **options):
        recipe = Recipe(tag=options["tag"], suite=options["suite"], mirror=options["mirror"],
                        packages=tuple(options["packages"] or ("python3",)))
        try:
            build_image(recipe, force=options["force"], log=lambda line: self.stdout.write(line))
        except SandboxUnavailable as exc:
            raise CommandError(str(exc)) from None
