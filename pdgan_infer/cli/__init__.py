"""The pdgan-* commands of the runtime, one module each: the parser and `main` (parse, call the library,
print, exit status through `pdgan_infer._cli.run_cli`), nothing else. `[project.scripts]` points here."""
