"""Ships the repository's top-level alembic/ inside the wheel as monitor/store/migrations/.

alembic/ stays where Alembic's own tooling expects it (`alembic upgrade head`, `alembic revision` from a
checkout); an installed netpol-drift (a wheel, the container image) has no checkout, so `build_py` copies the
same files into the package, where monitor/store/migrate.py looks first. One copy in git, two places at run time.
Everything else about the build is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MIGRATIONS = ("env.py", "script.py.mako", "versions/*.py")


class BuildWithMigrations(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install runs from the checkout, where migrate.py finds alembic/ itself
        target = Path(self.build_lib) / "monitor" / "store" / "migrations"
        for pattern in MIGRATIONS:
            for source in sorted(Path("alembic").glob(pattern)):
                self.copy_file(str(source), str(target / source.relative_to("alembic")), preserve_mode=False)

    def copy_file(self, infile, outfile, *args, **kwargs):
        Path(outfile).parent.mkdir(parents=True, exist_ok=True)
        return super().copy_file(infile, outfile, *args, **kwargs)


setup(cmdclass={"build_py": BuildWithMigrations})
