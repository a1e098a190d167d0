"""Reports on grouped layers and models: :mod:`.explain` (one layer's counts and valid groups),
:mod:`.diagram` (its picture), :mod:`.summary` (a model's table), :mod:`.demo` (the worked
example) and :mod:`.tables` (the text tables and JSON they print)."""
