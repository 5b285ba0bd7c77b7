"""Packages the shared `telemetry` code into the template image.

apache-beam is pinned to the same version as the Dockerfile's SDK image
(apache/beam_python3.11_sdk:2.77.0): the two must match.
"""

import setuptools

setuptools.setup(
    name="wp-telemetry-deactivation-pipeline",
    version="0.1.0",
    packages=setuptools.find_packages(include=["telemetry", "telemetry.*"]),
    package_data={"telemetry": ["schemas/*.json"]},
    install_requires=["apache-beam[gcp]==2.77.0", "pymongo==4.20.0", "python-json-logger==4.2.0"],
)
