"""Dynamic Visual Prompting: key elements, reference layouts on a grid, candidate search."""
