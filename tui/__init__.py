"""The Textual dashboard (`gdos tui`). Imported only by that command."""
