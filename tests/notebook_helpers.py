"Reading executed notebooks in tests."


def outputs(nb) -> str:
    "All text the executed notebook shows (streams, results, errors)."
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")) or "\n".join([o.get("ename", ""), o.get("evalue", "")]))
    return "\n".join(out)
