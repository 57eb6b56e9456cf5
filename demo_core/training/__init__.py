"""What makes the bundled assets: the emoji data, the trainers and their shared loop, evaluation, the
gallery. The app never imports this package (tests/test_layout.py)."""
