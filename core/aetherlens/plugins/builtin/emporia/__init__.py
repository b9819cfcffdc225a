"""Built-in plugin ``emporia``: Emporia Vue circuits and smart plugs of a cloud account (pyemvue)."""
