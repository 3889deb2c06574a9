/* Pixel art for the office: one palette and pixel grids (one character per pixel, '.' transparent), and the
   floor plan as data. All drawn by our own code so the page needs no third-party art. */
"use strict";
const ART = {
  palette: {k: "#222034", s: "#eec39a", h: "#663931", b: "#5b6ee1", d: "#8f563b", w: "#cbdbfc",
            m: "#9badb7", g: "#6abe30", r: "#ac3232", y: "#fbf236", f: "#595652", c: "#ffffff", o: "#df7126",
            t: "#76428a", p: "#d9a066"},
  person: ["..hhhh..", ".hhhhhh.", ".hssssh.", ".skssks.",
           "..ssss..", ".bbbbbb.", "bbbbbbbb", "sbbbbbbs", "sbbbbbbs", ".bbbbbb.", ".bb..bb.", ".kk..kk."],
  desk: ["kkkkkkkkkkkk", "dddddddddddd", "d..........d", "d..........d"],
  screen: ["kkkkk", "kwwwk", "kwwwk", "..k.."],
  coffee: ["kkkk", "kmmk", "krrk", "kmmk", "kkkk"],
  plant: [".g.g.", "ggggg", ".ggg.", ".ddd.", ".ddd."],
  book: ["rrrr", "rccr", "rrrr"],
  doc: ["cccc", "ckkc", "cccc", "ckkc", "cccc"],
  pencil: ["y", "y", "k"],
  cup: ["cc", "cc"],
  smoke: [".ff.f.", "ffffff", ".ffff.", "..ff.."],
  hand: ["ss"],
  hourglass: ["kkk", "ooo", ".o.", "o.o", "kkk"],
  shelf: ["dddddddd", "drbtgrbd", "drbtgrbd", "dddddddd", "dgtrbtgd", "dgtrbtgd", "dddddddd"],
  table: ["p".repeat(56), "p".repeat(56), "d".repeat(56), "d" + ".".repeat(54) + "d"],
};
const TILE = 8;  // pixels per floor tile: a person is one tile wide and a tile and a half tall
/* The floor plan, in tiles. Rooms sit in two columns and two rows (`grid`); each room is as tall as its desks
   need (three desks to a row, four tiles apart, a row every three tiles, at least two rows), so the office grows
   with the fleet.
   The meeting room also holds the table where agents working on one pipeline or run meet. */
const LAYOUT = {
  roomWidth: 14, perRow: 3, minRows: 2, gap: 1,
  grid: [["meeting", "monitoring"], ["library", "overflow"]],
  rooms: {
    meeting: {floor: "#45283c", label: "meeting room", table: true},
    monitoring: {floor: "#323c39", label: "monitoring room", plant: true},
    library: {floor: "#3f3f74", label: "library", shelf: true},
    overflow: {floor: "#4b692f", label: "open space"},
  },
  table: {dx: 3, w: 7},  // tiles from the room's left edge, and its width (the `table` grid is w × TILE pixels)
};
