from daydream.cli import cli

cli(prog_name="daydream")
