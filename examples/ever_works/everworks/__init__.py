"""A directory generator that hands its slow work to Triggerfish, or does it itself."""
