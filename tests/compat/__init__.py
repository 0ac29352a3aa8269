"""Where students open the course: Colab's libraries and Binder's image (tests/compat/README.md)."""
