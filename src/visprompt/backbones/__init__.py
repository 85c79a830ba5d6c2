"""Frozen backbones: timm ViTs (VPT) and open_clip CLIPs (visual prompting, RPO)."""
