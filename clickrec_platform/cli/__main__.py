from clickrec_platform.cli import app

app()
