"""Search algorithms: ``suggest(new_ids, domain, trials, seed) -> list[trial doc]`` (see base)."""
