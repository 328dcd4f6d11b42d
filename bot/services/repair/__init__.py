"""/repair: diagnose a broken replica and mend it in proportion to the damage."""
