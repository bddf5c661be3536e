#!/usr/bin/env python3
"""Writes a C file defining `const char NAME[]` (the input's bytes, NUL-terminated) and NAME_len.
Usage: embed.py INPUT OUTPUT NAME. Used by the build to embed static pages (src/gate/www)."""
import sys

src, out, name = sys.argv[1:4]
data = open(src, 'rb').read()
with open(out, 'w') as f:
    f.write('/* Generated from %s by scripts/embed.py: do not edit. */\n#include <stddef.h>\n' % src.split('/')[-1])
    f.write('const char %s[] = {\n' % name)
    for i in range(0, len(data), 16):
        f.write('    ' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',\n')
    f.write('    0};\nconst size_t %s_len = %d;\n' % (name, len(data)))
