"""NAVA Studio entry point: `python app.py` starts the studio (also the Hugging Face Space entry)."""

from app.cli import main

if __name__ == "__main__":
    main()
