"""The built-in policy profiles, one TOML file each (package data).

`stockade.Policy.load(NAME)` reads `NAME.toml` from here; `sandbox policies` lists them.
"""
