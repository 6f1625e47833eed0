"""Qt-free viewer logic: orientation, the shared cursor, difference maps, caches. No widgets here."""
