"""VIA converter: VIA 3 projects out (boxes, track ids, action checkboxes), finished projects in, and the AVA
dataset written from the imported labels."""
