from hpcxlt.cli import main

if __name__ == "__main__":  # a fork server or spawned job process imports this module without running it
    raise SystemExit(main())
