"""Export invariance: re-export test slices in controlled ways and measure what changes."""
