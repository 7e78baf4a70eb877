"""Accuracy of every run group of docs/questions.md at equal step counts (1,500 and 2,750 steps; eval every 250),
mean ± std over its seeds with each seed listed: the equal-step view the per-group report tables lack."""
import json, glob, statistics as st, collections
groups = collections.defaultdict(list)
for d in sorted(glob.glob("results/runs/questions/*/*-seed*")):
    name = d.split("questions/")[1].rsplit("-seed", 1)[0]
    recs = {r["step"]: r["accuracy"] for r in map(json.loads, open(d + "/metrics.jsonl")) if "accuracy" in r}
    groups[name].append(recs)
print("| run group | accuracy at step 1500 | accuracy at step 2750 |\n|---|---|---|")
for name, runs in groups.items():
    cells = []
    for step in (1500, 2750):
        values = [r[step] for r in runs if step in r]
        cells.append(f"{st.mean(values):.3f} ± {st.stdev(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})" if len(values) == 3 else "-")
    print(f"| {name} | {cells[0]} | {cells[1]} |")
