#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumoweb.settings")
    from pneumoweb.var_dir import unprepared_message

    # Settings never write files: say what to run, instead of SQLite's "unable to open database file".
    if message := unprepared_message():
        sys.exit(message)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
