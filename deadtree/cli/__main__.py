from deadtree.cli import app

app()
