"""The app's views: slices, long-axis reformats, 3D surfaces, phenotypes."""
