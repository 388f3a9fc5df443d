"""Reads a .env file with python-dotenv as a host would (`dotenv_values`,
interpolation on, its default) and prints what it read as JSON.
Usage: python read_dotenv.py FILE"""
import json
import sys

from dotenv import dotenv_values

json.dump(dotenv_values(sys.argv[1]), sys.stdout)
