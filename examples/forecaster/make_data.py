"""Writes data/engines.csv: synthetic run-to-failure records of 60 engines, four sensors each
cycle, and each cycle's remaining useful life (RUL, capped at 125 cycles as is usual for the
NASA C-MAPSS data this imitates). Seeded, so the file is the same on every run:

    python3 examples/forecaster/make_data.py
"""
import csv
import math
import random
from pathlib import Path

random.seed(7)
rows = []
for unit in range(1, 61):
    life = random.randint(90, 220)
    base = [random.gauss(0, 0.05) for _ in range(4)]
    rate = random.uniform(0.8, 1.2)
    for cycle in range(1, life + 1):
        wear = (cycle / life) ** 2 * rate
        sensors = [
            518.7 + 2.0 * wear + base[0] + random.gauss(0, 0.15),
            642.5 + 4.0 * wear + base[1] + random.gauss(0, 0.3),
            1590.0 + 30.0 * wear + 10 * base[2] + random.gauss(0, 3.0),
            47.5 + 1.5 * math.sqrt(wear) + base[3] + random.gauss(0, 0.08),
        ]
        rul = min(life - cycle, 125)
        rows.append([unit, cycle, *(round(s, 3) for s in sensors), rul])

out = Path(__file__).parent / "data" / "engines.csv"
out.parent.mkdir(exist_ok=True)
with open(out, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["unit", "cycle", "s1", "s2", "s3", "s4", "rul"])
    writer.writerows(rows)
print(f"{len(rows)} rows of {out}")
