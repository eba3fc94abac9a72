"""The pictures the demo, the tests and the benchmark read: their backgrounds, sizes and lines.

``DEMO`` spans 1 to 12 megapixels, landscape and portrait, with lines at several sizes, tilted
a few degrees and upside down, on plates and as outlined captions. ``SMALL`` is a few small
pictures for the end-to-end test (quick on two cores). ``BENCHMARK`` is the one picture every
benchmark request sends.
"""

from __future__ import annotations

from rendering import Line, Scene

DEMO = (
    Scene(
        "astronaut-1mp",
        "astronaut",
        (1152, 864),
        (
            Line("Serving models with mosec", 0.07),
            Line("A pipeline of five stages", 0.06, font="serif"),
            Line("Batch size 16, wait 10 ms", 0.055, style="outline"),
        ),
    ),
    Scene(
        "coffee-1.5mp",
        "coffee",
        (1500, 1000),
        (
            Line("Coffee at 8:30 every day", 0.07, font="bold"),
            Line("This line is upside down", 0.06, angle=180),
            Line("Cups sold today: 1,284", 0.06),
        ),
        format="PNG",
    ),
    Scene(
        "chelsea-2mp",
        "chelsea",
        (1632, 1224),
        (
            Line("The cat sat on the mat", 0.075, angle=6),
            Line("Tilted lines read fine", 0.065, angle=-8, style="outline"),
            Line("Whiskers: 24, paws: 4", 0.06),
        ),
    ),
    Scene(
        "rocket-3mp",
        "rocket",
        (2048, 1536),
        (
            Line("Launch window opens 06:45", 0.06, font="bold"),
            Line("FUEL LOAD 98.6 PERCENT", 0.055, angle=180, style="outline"),
            Line("Countdown hold at T-minus 10", 0.05, angle=-5),
        ),
    ),
    Scene(
        "coffee-portrait-3mp",
        "coffee",
        (1416, 2124),
        (
            Line("Portrait pictures", 0.09, font="bold"),
            Line("batch with the others", 0.08),
            Line("after padding", 0.08, angle=180),
            Line("Espresso 2.50", 0.085, style="outline"),
        ),
    ),
    Scene(
        "hubble-4mp",
        "hubble_deep_field",
        (2304, 1728),
        (
            Line("Deep field: 10,000 galaxies", 0.06, style="outline", font="bold"),
            Line("Light that left 13 billion years ago", 0.045),
            Line("Exposure 11.3 days", 0.055, angle=4, style="outline"),
        ),
    ),
    Scene(
        "retina-6mp",
        "retina",
        (2828, 2121),
        (
            Line("Fundus photograph, left eye", 0.05),
            Line("Patient 0042 - visit 3", 0.05, angle=180, font="serif"),
            Line("Optic disc and macula", 0.05, style="outline"),
        ),
    ),
    Scene(
        "camera-8mp",
        "camera",
        (3264, 2448),
        (
            Line("Black and white photography", 0.055, font="serif"),
            Line("Tripod, f/8 at 1/125 s", 0.05, angle=-6),
            Line("Roll 12, frame 36", 0.05, angle=180, style="outline"),
        ),
    ),
    Scene(
        "motorcycle-10mp",
        "stereo_motorcycle",
        (3648, 2736),
        (
            Line("Workshop open Monday to Friday", 0.05, font="bold"),
            Line("Service and repairs since 1987", 0.045, style="outline"),
            Line("Call 555-0199 for a quote", 0.045, angle=5),
        ),
    ),
    Scene(
        "astronaut-12mp",
        "astronaut",
        (4000, 3000),
        (
            Line("Twelve megapixels, one request", 0.05),
            Line("Decoded at half size in the first stage", 0.04, font="serif"),
            Line("Read upside down as well", 0.05, angle=180, style="outline"),
            Line("Mission patch 7", 0.05, angle=-7),
        ),
    ),
)

SMALL = (
    Scene(
        "small-astronaut",
        "astronaut",
        (640, 480),
        (Line("Hello mosec", 0.11, font="bold"), Line("Reading 2024", 0.1)),
    ),
    Scene(
        "small-coffee",
        "coffee",
        (640, 480),
        (Line("Upside down", 0.11, angle=180), Line("Batch of lines", 0.1)),
        format="PNG",
    ),
    Scene(
        "small-rocket",
        "rocket",
        (640, 480),
        (Line("Tilted text", 0.11, angle=6), Line("Launch at 9:15", 0.1, style="outline")),
    ),
)

BENCHMARK = Scene(
    "benchmark-3mp",
    "rocket",
    (2048, 1536),
    (
        Line("Launch window opens 06:45", 0.06, font="bold"),
        Line("FUEL LOAD 98.6 PERCENT", 0.055, angle=180, style="outline"),
        Line("Countdown hold at T-minus 10", 0.05, angle=-5),
    ),
)
