"""Weights shipped in the wheel (LPIPS), read with numpy: nothing is downloaded at run time."""
