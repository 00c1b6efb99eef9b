from faultbox.cli.main import entry

entry()
