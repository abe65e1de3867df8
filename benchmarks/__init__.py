"""csvr benchmarks (`csvr bench ...`): they print numbers and write JSON; no library code imports them."""
