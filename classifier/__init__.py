"""Priority classifier: proposes Kritisch, Hoch, Mittel or Niedrig with confidence and reasons."""
